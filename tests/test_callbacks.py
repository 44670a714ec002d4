"""PartialUnfreeze on its own, in a plain skorch net."""

import numpy as np
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn
from torchvision.models import mobilenet_v3_small

from sktransfer import PartialUnfreeze


def _net(**kwargs):
    torch.manual_seed(0)
    model = mobilenet_v3_small(num_classes=2)
    return model, NeuralNetClassifier(
        model, criterion=nn.CrossEntropyLoss, max_epochs=3, lr=1e-2, batch_size=8,
        train_split=None, verbose=0,
        callbacks=[("partial_unfreeze", PartialUnfreeze(**kwargs))],
    )


def test_plain_skorch_net_trains_head_then_last_blocks_with_frozen_batchnorm(tiny):
    X, y = tiny
    X = torch.as_tensor(X[:, :32, :32].transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    model, net = _net(n=2, at_epoch=1, lr=1e-3, blocks="features")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net.fit(X, y)
    after = model.state_dict()
    n_blocks = len(model.features)
    last_two = tuple(f"features.{i}." for i in (n_blocks - 2, n_blocks - 1))
    for key, value in after.items():
        stat = key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        if stat or (key.startswith("features.") and not key.startswith(last_two)):
            assert torch.equal(value, before[key]), f"{key} changed"
    changed = [k for k in after if k.startswith(last_two) and not torch.equal(after[k], before[k])]
    assert changed, "the last two blocks did not train"
    assert not torch.equal(after["classifier.3.weight"], before["classifier.3.weight"])
    assert net.history[:, "lr"] == [1e-2, 1e-3, 1e-3]


def test_n_zero_keeps_every_block_frozen(tiny):
    X, y = tiny
    X = torch.as_tensor(X[:, :32, :32].transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    model, net = _net(n=0, at_epoch=1, lr=1e-3, blocks=lambda m: list(m.features))
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    net.fit(X, y)
    assert all(torch.equal(v, before[k]) for k, v in model.features.state_dict().items())
    assert np.allclose(net.history[:, "lr"], [1e-2, 1e-3, 1e-3])


def test_phase_2_warms_up_step_by_step_and_leaves_the_rates_as_they_were(tiny):
    X, y = tiny  # 16 images, batches of 8: two steps an epoch
    X = torch.as_tensor(X[:, :32, :32].transpose(0, 3, 1, 2) / 255.0, dtype=torch.float32)
    steps = []

    class Rates(Callback):  # the rate each training step is taken with
        def on_batch_begin(self, net, training=False, **kwargs):
            if training:
                steps.append(net.optimizer_.param_groups[0]["lr"])

    model, net = _net(n=1, at_epoch=1, lr=1e-3, blocks="features", warmup=3)
    net.set_params(callbacks=[*net.callbacks, ("rates", Rates())]).fit(X, y)
    np.testing.assert_allclose(steps, [1e-2, 1e-2, 1e-3 / 4, 2e-3 / 4, 3e-3 / 4, 1e-3])
    assert net.optimizer_.param_groups[0]["lr"] == 1e-3  # restored after each step
    assert net.history[:, "lr"] == [1e-2, 1e-3, 1e-3]
