"""The seams between modules: parameters round-trip, impossible settings refused early,
nothing process-wide changed, no surprise left on the fitted model."""

import logging
import pickle
import socket
import threading
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from torch import nn

from sktransfer import TransferClassifier, TransferRegressor, load
from sktransfer.loading import MACHINE_PARAMS
from sktransfer.persistence.stored_params import UnstorableParameter, decode, encode

from conftest import blobs, requires_imagenet

X, Y = blobs(12, size=36)
BASE = dict(backbone="resnet18", weights=None, image_size=32, epochs=1)


def _same(a, b):
    """Equal parameter values, of the same type (a RandomState by its state)."""
    if isinstance(a, np.random.RandomState):
        return isinstance(b, np.random.RandomState) and all(
            np.array_equal(x, y) for x, y in zip(a.get_state(), b.get_state()))
    return type(a) is type(b) and a == b


def _stored(est):
    """What a model file must give back: every parameter but the machine's and callbacks."""
    return {k: v for k, v in est.get_params().items()
            if k not in MACHINE_PARAMS and k != "callbacks"}


COMMON = {
    "hidden_units": st.sampled_from([(), 8, (8,), [8, 4], (4, 4)]),
    "pooling": st.sampled_from(["avg", "max", "flatten"]),
    "dropout": st.floats(0, 0.9),
    "lr": st.floats(1e-5, 1e-1),
    "unfreeze": st.sampled_from([0, 1, 2]),
    "finetune_epochs": st.integers(0, 1),
    "finetune_lr_decay": st.sampled_from([1.0, 0.5]),
    "lr_schedule": st.sampled_from(["constant", "cosine"]),
    "optimizer": st.sampled_from(["adam", "adamw", "sgd", "rmsprop", torch.optim.SGD,
                                  torch.optim.Adam]),
    "batch_size": st.integers(2, 16),
    "crop": st.booleans(),
    "augment_views": st.integers(0, 1),
    "tta": st.integers(1, 2),
    "early_stopping": st.booleans(),
    "validation_fraction": st.sampled_from([0.25, 0.5]),
    "n_iter_no_change": st.integers(1, 3),
    "engine": st.sampled_from(["torch", "auto"]),
    "on_error": st.sampled_from(["raise", "skip"]),
    "random_state": st.one_of(st.none(), st.integers(0, 2**31 - 1),
                              st.integers(0, 100).map(np.random.RandomState)),
}
KINDS = {
    TransferClassifier: {**COMMON, "label_smoothing": st.floats(0, 0.5),
                         "class_weight": st.sampled_from([None, "balanced", {0: 1.0, 1: 2.5}])},
    TransferRegressor: {**COMMON, "loss": st.sampled_from(["squared_error", "huber",
                                                           "absolute_error"])},
}


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
def test_every_parameter_value_round_trips(cls, tmp_path_factory):
    @settings(max_examples=8, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.fixed_dictionaries(KINDS[cls]))
    def round_trip(params):
        est = cls(**BASE, **params).fit(X, Y if cls is TransferClassifier else Y * 10.0)
        path = tmp_path_factory.mktemp("rt") / "m.sktransfer"
        est.save(path)
        loaded = load(path)
        before, after = _stored(est), _stored(loaded)
        assert before.keys() == after.keys()
        for name in before:
            assert _same(before[name], after[name]), (name, before[name], after[name])
        again = clone(loaded)  # as a search would
        assert all(_same(v, _stored(again)[k]) for k, v in before.items())
        refit = loaded.fit(X, Y if cls is TransferClassifier else Y * 10.0)
        assert refit.predict(X[:2]).shape[0] == 2

    round_trip()


@pytest.mark.parametrize("value", [(1, [2, (3,)]), {1: "a", "b": (2.5,)}, [None, True, "x"],
                                   np.float32(0.5), torch.optim.AdamW])
def test_values_decode_to_what_was_encoded(value):
    import json

    back = decode(json.loads(json.dumps(encode("p", value))))
    expected = value.item() if isinstance(value, np.generic) else value
    assert back == expected and type(back) is type(expected)


class MyAdam(torch.optim.Adam):
    pass


@pytest.mark.parametrize("params, message", [
    ({"optimizer": MyAdam}, "parameter 'optimizer': the class .*MyAdam is not in torch.optim"),
    ({"class_weight": {0: lambda: 1, 1: 1.0}}, "parameter 'class_weight': a function"),
])
def test_what_cannot_be_stored_is_refused_at_save(params, message, tmp_path):
    # set after the fit, as a user might (a lambda cannot weigh a class in a fit)
    est = TransferClassifier(**BASE).fit(X, Y).set_params(**params)
    with pytest.raises(UnstorableParameter, match=message):
        est.save(tmp_path / "m.sktransfer")
    assert not list(tmp_path.iterdir())


@requires_imagenet
def test_a_weights_enum_round_trips_and_refits(tmp_path):
    from torchvision.models import MobileNet_V2_Weights

    enum = MobileNet_V2_Weights.IMAGENET1K_V1
    est = TransferClassifier(backbone="mobilenet_v2", weights=enum, image_size=32,
                             epochs=1).fit(X, Y)
    est.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.get_params()["weights"] is enum
    assert loaded.fit(X, Y).weights_ == "IMAGENET1K_V1"  # the real weights, found again


def test_impossible_settings_are_refused_before_the_backbone_is_built(monkeypatch):
    from sktransfer.extraction import mixin as extractor_mixin

    built = []
    original = extractor_mixin.build_backbone
    monkeypatch.setattr(extractor_mixin, "build_backbone", lambda *a, **k: built.append(a) or
                        original(*a, **k))
    with pytest.raises(ValueError, match="unfreeze=30 but backbone 'mobilenet' has only 19 "
                                         "blocks; use unfreeze <= 19"):
        TransferClassifier(unfreeze=30).fit(X, Y)
    with pytest.raises(ValueError, match="resnet18' has only 5 blocks"):
        TransferRegressor(backbone="resnet18", unfreeze=6).fit(X, Y * 1.0)
    assert built == []
    TransferRegressor(**{**BASE, "unfreeze": 5}).fit(X, Y * 1.0)  # the count counts
    assert len(built) == 1


def test_export_leaves_the_fitted_network_as_it_was(tmp_path):
    pytest.importorskip("onnx")
    est = TransferClassifier(**BASE, unfreeze=1, finetune_epochs=1).fit(X, Y)
    module = est.net_.module_
    module.train()  # whatever mode it was in stays
    params = {k: v.data_ptr() for k, v in module.state_dict().items()}
    device = next(module.parameters()).device
    est.export_onnx(tmp_path / "m.onnx")
    assert module.training and next(module.parameters()).device == device
    assert {k: v.data_ptr() for k, v in module.state_dict().items()} == params


class Bessel(nn.Module):
    """An operation no ONNX converter knows: the engines fall back to torch."""

    def forward(self, x):  # noqa: D102
        return torch.special.bessel_j0(x)


def test_engine_tells_what_really_runs_after_a_fallback():
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), Bessel()),
                             nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = TransferClassifier(backbone=backbone, image_size=32, epochs=1,
                                 engine="auto").fit(X, Y)
    assert any("could not convert this network" in str(w.message) for w in caught)
    assert est.engine_ == "torch"
    assert pickle.loads(pickle.dumps(est)).engine_ == "torch"


def test_downloads_and_int8_fits_leave_process_settings_alone(tmp_path, monkeypatch):
    """The socket default timeout and the root logger's level, watched from another thread
    while a download times out and an int8 fit quantizes."""
    pytest.importorskip("onnxruntime")
    import http.server

    from sktransfer.backbones import weights as weights_mod
    from sktransfer.backbones.weights import WeightsDownloadError

    class Silent(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            threading.Event().wait(3)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    from torchvision.models import MobileNet_V2_Weights

    monkeypatch.setattr(weights_mod, "DOWNLOAD_TIMEOUT", 0.5)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("SKTRANSFER_WEIGHTS_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.add((socket.getdefaulttimeout(), logging.getLogger().level))

    before = (socket.getdefaulttimeout(), logging.getLogger().level)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(WeightsDownloadError, match="timed out"):
            weights_mod.download_weights(MobileNet_V2_Weights.IMAGENET1K_V1, progress=False)
        small = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU()),
                              nn.Sequential(nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()))
        TransferClassifier(backbone=small, image_size=32, epochs=1,
                           engine="onnxruntime-int8").fit(X, Y)
    finally:
        done.set()
        watcher.join()
        httpd.shutdown()
    assert seen == {before}
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing half-downloaded


def test_the_memory_cache_bound_is_read_when_used(monkeypatch):
    from sktransfer.extraction.cache import MemoryStore

    store = MemoryStore()
    monkeypatch.setenv("SKTRANSFER_CACHE_BYTES", "1K")
    store.put("a", torch.zeros(200))  # 800 bytes
    store.put("b", torch.zeros(200))
    assert len(store) == 1 and store.limit() == 1024
    monkeypatch.setenv("SKTRANSFER_CACHE_BYTES", "2G")
    assert store.limit() == 2 << 30
    monkeypatch.setenv("SKTRANSFER_CACHE_BYTES", "lots")
    with pytest.raises(ValueError, match="SKTRANSFER_CACHE_BYTES: 'lots' is not a size"):
        store.put("c", torch.zeros(1))


def test_unexpected_errors_show_their_traceback(monkeypatch, capsys):
    from sktransfer import cli

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "cmd_backbones", broken)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["backbones"])
