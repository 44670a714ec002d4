"""The backbone registry: the seed's five families, aliases, the generic rule, custom modules."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import TransferClassifier, list_backbones
from sktransfer.backbones.building import ALIASES, build_backbone, resolve_name
from sktransfer.backbones.shapes import feature_shape

# name -> (blocks, channels of the last feature map, input size, test image size)
FAMILIES = {
    "vgg16": (5, 512, 224, 32),
    "resnet50": (5, 2048, 224, 32),
    "inception_v3": (13, 2048, 299, 80),
    "mobilenet_v2": (19, 1280, 224, 32),
    "mobilenet_v3_small": (13, 576, 224, 32),
    "mobilenet_v3_large": (17, 960, 224, 32),
    "efficientnet_b0": (9, 1280, 224, 32),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_seed_families_build_split_and_train_one_step(name, tiny):
    n_blocks, channels, input_size, size = FAMILIES[name]
    bb = build_backbone(name, weights=None)
    assert bb.n_blocks == n_blocks
    assert bb.input_size == input_size
    assert feature_shape(bb.blocks, size)[0] == channels
    X, y = tiny
    X = np.stack([np.resize(x, (size, size, 3)) for x in X[:4]])
    clf = TransferClassifier(backbone=name, weights=None, image_size=size, epochs=1, unfreeze=1,
                             finetune_epochs=1, batch_size=4, random_state=0).fit(X, y[:4])
    assert clf.n_blocks_ == n_blocks
    assert len(clf.history_) == 2  # one step per phase
    proba = clf.predict_proba(X)
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_blocks_and_top_compose_to_the_torchvision_model(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18().eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pt")
    bb = build_backbone("resnet18", weights=tmp_path / "r18.pt")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = x
        for block in bb.blocks:
            out = block(out)
        torch.testing.assert_close(bb.top(out), reference(x))


def test_inception_has_no_aux_logits_and_uses_299px():
    bb = build_backbone("inception", weights=None)
    assert bb.name == "inception_v3" and bb.input_size == 299
    assert not any("AuxLogits" in type(m).__name__ or "InceptionAux" in type(m).__name__
                   for b in bb.blocks for m in b.modules())
    assert bb.transform().crop_size == [299]


def test_aliases_resolve():
    assert {a: resolve_name(a) for a in ALIASES} == {
        "mobilenet": "mobilenet_v2", "resnet": "resnet50", "vgg": "vgg16",
        "inception": "inception_v3", "efficientnet": "efficientnet_b0",
    }
    assert resolve_name("MobileNet") == "mobilenet_v2"


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "regnet_y_400mf", "mnasnet0_5",
                                  "shufflenet_v2_x0_5", "squeezenet1_0", "alexnet"])
def test_generic_rule_covers_other_torchvision_cnns(name):
    bb = build_backbone(name, weights=None)
    shape = feature_shape(bb.blocks, 64)
    assert len(shape) == 3 and shape[0] > 0
    out = torch.zeros(1, *shape)
    assert bb.top(out).shape == (1, 1000)


@pytest.mark.parametrize("name", ["no_such_net", "vit_b_99"])
def test_unsupported_names_fail_with_the_list(name):
    with pytest.raises(ValueError, match=name) as info:
        build_backbone(name, weights=None)
    message = str(info.value)  # the aliases, and where the full list is
    assert "mobilenet, resnet, vgg" in message and "sktransfer backbones" in message


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ValueError, match="Did you mean 'mobilenet'"):
        build_backbone("mobilenett", weights=None)
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        build_backbone("resnet05", weights=None)


def test_backbone_must_be_name_or_module():
    with pytest.raises(TypeError, match="backbone"):
        resolve_name(42)


class WithBlocks(nn.Module):
    """The `blocks` form of the custom-module contract."""

    input_size = 32

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU()),
        ])


def test_custom_module_contract(tiny):
    X, y = tiny
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU())
    before = {k: v.clone() for k, v in seq.state_dict().items()}
    clf = TransferClassifier(backbone=seq, image_size=32, epochs=2, unfreeze=2, finetune_epochs=2,
                             finetune_lr=1e-2, random_state=0).fit(X, y)
    assert clf.n_blocks_ == 4 and clf.weights_ == "custom"
    # The user's module is never trained in place.
    assert all(torch.equal(before[k], v) for k, v in seq.state_dict().items())

    module = WithBlocks()
    bb = build_backbone(module)
    assert bb.n_blocks == 2 and bb.input_size == 32
    assert TransferClassifier(backbone=module, epochs=1).fit(X, y).predict(X).shape == (16,)


def test_custom_module_weights_from_a_file(tmp_path):
    source = WithBlocks()
    path = tmp_path / "custom.pt"
    torch.save(source.state_dict(), path)
    bb = build_backbone(WithBlocks(), weights=path)
    assert torch.equal(bb.blocks[0][0].weight, source.blocks[0][0].weight)


def test_custom_module_without_blocks_is_refused():
    class Plain(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="blocks"):
        build_backbone(Plain())


def test_list_backbones_describes_the_registry():
    rows = {r["name"]: r for r in list_backbones()}
    assert {"vgg16", "resnet50", "inception_v3", "mobilenet_v2", "efficientnet_b0"} <= set(rows)
    row = rows["mobilenet_v2"]
    assert row["aliases"] == ["mobilenet"]
    assert (row["blocks"], row["feature_size"], row["input_size"]) == (19, 1280, 224)
    assert rows["inception_v3"]["input_size"] == 299
    assert 60 < row["top1"] < 80
    assert isinstance(row["offline"], bool)


def test_preprocessing_crop_matches_torchvision_and_default_keeps_the_whole_image():
    from torchvision.models import MobileNet_V2_Weights

    import dataclasses

    from sktransfer.backbones.weights import preset_of

    bb = build_backbone("mobilenet_v2", weights=None)
    bb.record = dataclasses.replace(bb.record, preset=preset_of(MobileNet_V2_Weights.IMAGENET1K_V1))
    img = torch.randint(0, 256, (3, 180, 320), dtype=torch.uint8)
    torch.testing.assert_close(bb.transform(crop=True)(img),
                               MobileNet_V2_Weights.IMAGENET1K_V1.transforms()(img))
    wide = torch.zeros(3, 100, 300, dtype=torch.uint8)
    wide[:, :, :50] = 255  # a white band at the left border
    assert bb.transform(crop=True)(wide)[:, :, :20].max() < 0  # cut off by the center crop
    assert bb.transform(crop=False)(wide)[:, :, :20].min() > 2  # kept, squeezed
    assert bb.transform(64).crop_size == [64] and "crop=False" in repr(bb.transform())


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "inception_v3", "efficientnet_b0",
                                  "mobilenet_v3_small"])
def test_folding_batchnorm_keeps_the_output_and_the_originals(name):
    from sktransfer.extraction.folding import fuse_conv_bn

    bb = build_backbone(name, weights=None)
    torch.manual_seed(0)
    for m in (mm for b in bb.blocks for mm in b.modules()):
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    before = [{k: v.clone() for k, v in b.state_dict().items()} for b in bb.blocks]
    fused = fuse_conv_bn(bb.blocks)
    assert not any(isinstance(m, nn.BatchNorm2d) for f in fused for m in f.modules())
    x = torch.randn(2, 3, 80, 80)
    with torch.inference_mode():
        a, b = x, x
        for block, fast in zip(bb.blocks, fused):
            a, b = block.eval()(a), fast(b)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    for block, state in zip(bb.blocks, before):  # the originals are untouched
        assert all(torch.equal(v, state[k]) for k, v in block.state_dict().items())


@pytest.mark.parametrize("crop", [False, True])
def test_batch_preprocessing_is_bit_identical_to_per_image(crop):
    from sktransfer.inputs.images import as_images
    from sktransfer.extraction.extractor import Extractor

    transform = build_backbone("resnet18", weights=None).transform(48, crop=crop)
    rng = np.random.RandomState(0)
    uint8 = [rng.randint(0, 256, (40 + 7 * i, 60 + 3 * i, 3), dtype=np.uint8) for i in range(5)]
    mixed = uint8[:3] + [u.astype(np.float64) / 255.0 for u in uint8[3:]]
    for X in (uint8, mixed):
        images = as_images(X)
        one_by_one = torch.stack([transform(images.image(i)) for i in range(len(X))])
        batched = Extractor([], transform).run(X, cache=False, batch_size=4, n_jobs=2)
        assert torch.equal(batched, one_by_one)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_normalisation_is_torchvisions_within_1e_6_and_leaves_its_input(dtype):
    import torchvision.transforms.functional as TF

    pre = build_backbone("mobilenet_v2", weights=None).transform()
    x = torch.randint(0, 256, (4, 3, 17, 19), dtype=torch.uint8)
    if dtype != torch.uint8:
        x = x.to(dtype) / 255
    before = x.clone()
    expected = TF.normalize(TF.convert_image_dtype(x, torch.float32), pre.mean, pre.std)
    out = pre.normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(x, before)
    assert torch.equal(pre.normalize(x[1]), out[1])  # a batch, or its images one by one


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_crop_preset_is_the_weights_own_transforms_for_every_alias(alias):
    """Resize, crop, interpolation (bicubic for EfficientNet), mean and std: all carried."""
    from torchvision.models import get_model_weights

    name = ALIASES[alias]
    bb = build_backbone(alias, weights=None)  # random weights use the default preset
    preset = get_model_weights(name).DEFAULT.transforms()
    ours = bb.transform(crop=True)
    assert ours.interpolation == preset.interpolation.value
    img = torch.randint(0, 256, (3, 211, 347), dtype=torch.uint8)
    torch.testing.assert_close(ours(img), preset(img), atol=1e-5, rtol=0)
    # ... and the fingerprint sees the interpolation
    other = bb.transform(crop=True)
    other.interpolation = "nearest"
    assert repr(other) != repr(ours)


def test_folding_keeps_timm_batchnorm_with_activation():
    pytest.importorskip("timm")
    from sktransfer.extraction.folding import fuse_conv_bn

    bb = build_backbone("efficientnet_lite0", weights=None)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = x, x
        for block, fast in zip(bb.blocks, fuse_conv_bn(bb.blocks)):
            a, b = block.eval()(a), fast(b)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_the_shipped_table_is_what_the_models_say():
    from sktransfer.backbones import catalog
    from sktransfer.backbones.building import describe_packaged
    from sktransfer.backbones.torchvision_family import describe as describe_torchvision, supported_names

    shipped = catalog.shipped_rows()
    if shipped is None:
        pytest.skip("the shipped table is for another torchvision (make backbone-table)")
    rows = {r["name"]: r for r in shipped}
    assert {n for n, r in rows.items() if r["source"] == "torchvision"} == set(supported_names())
    # One model of each family (building all takes half a minute).
    sample = [*ALIASES.values(), "alexnet", "densenet121", "regnet_y_400mf", "shufflenet_v2_x1_0",
              "mnasnet1_0", "squeezenet1_1", "mobilenet_v3_small", "efficientnet_v2_s"]
    live = {r["name"]: r for r in describe_torchvision(sample)}
    if importlib.util.find_spec("timm"):
        live.update({r["name"]: r for r in describe_packaged()})
    assert {n: rows[n] for n in live} == live


def test_backbones_command_answers_without_loading_torch():
    code = ("import sys; from sktransfer.cli import main; assert main(['backbones']) == 0; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "mobilenet_v2" in lines and "efficientnet_lite2" in lines and "timm/<name>" in out.stdout


def test_deep_copy_keeps_ties_and_shares_nothing_mutable():
    from sktransfer.backbones.building import deep_copy

    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.BatchNorm1d(4), nn.Linear(4, 4))
    model[2].weight = lin.weight  # tied
    copied = deep_copy({"m": model, "again": lin})
    new = copied["m"]
    assert new[2].weight is new[0].weight and copied["again"] is new[0]
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(),
                                                              new.parameters()))
    assert torch.equal(new[1].running_var, model[1].running_var)
    x = torch.randn(3, 4)
    model.eval(), new.eval()
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=0)
    new[1].register_forward_pre_hook(lambda module, args: None)  # on the copy only
    assert not model[1]._forward_pre_hooks
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        new[0].weight.add_(1.0)
    assert torch.equal(model[0].weight, before)
