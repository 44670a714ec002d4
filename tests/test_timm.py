"""timm backbones: the blocks and pooling are the model's own forward, and everything else works."""

import pickle

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is an optional extra: pip install sktransfer[timm]")

from sktransfer import TransferClassifier, PretrainedFeatures, load  # noqa: E402
from sktransfer.backbones.building import build_backbone  # noqa: E402
from sktransfer.backbones.timm_family import create_model, locate, split  # noqa: E402

from conftest import blobs  # noqa: E402

# One model of each family, small enough to build with random weights in a second.
FAMILIES = {
    "resnet": "timm/resnet18",
    "convnext": "timm/convnext_atto",
    "efficientnet": "timm/efficientnet_b0",
    "regnet": "timm/regnetx_002",
    "vit": "timm/vit_tiny_patch16_224",
    "dinov2": "timm/vit_small_patch14_dinov2",
}


def _relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_and_pooling_are_the_models_own_forward(family):
    torch.manual_seed(0)
    model = create_model(locate(FAMILIES[family], None))
    size = 70 if family == "dinov2" else 64  # a ViT's native grid would be slow here
    if hasattr(model, "set_input_size"):
        model.set_input_size(img_size=(size, size))
    blocks, pool, top = split(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        h = x
        for block in blocks:
            h = block(h)
        features = model.forward_features(x)
        assert _relative_error(h, features) < 1e-4
        assert _relative_error(pool(h), model.forward_head(features, pre_logits=True)) < 1e-4
        if top is not None:
            assert _relative_error(top(h), model(x)) < 1e-4
    # blocks and head share the model's tensors, and together hold every one of them
    held = {id(t) for m in [*blocks, pool.head, *([top] if top else [])] for t in m.state_dict(
        keep_vars=True).values()}
    assert {id(t) for t in model.state_dict(keep_vars=True).values()} <= held | {
        id(t) for t in model.get_classifier().state_dict(keep_vars=True).values()}


def test_preprocessing_comes_from_the_pretrained_cfg():
    bb = build_backbone("timm/resnet50.a1_in1k", weights=None)
    cfg = timm.models.get_pretrained_cfg("resnet50.a1_in1k")
    preset = bb.record.preset
    assert (preset.input_size, preset.interpolation, preset.mean, preset.std) == (
        cfg.input_size[-1], cfg.interpolation, cfg.mean, cfg.std)
    assert preset.resize_size == int(cfg.input_size[-1] / cfg.crop_pct)  # 224 / 0.95 -> 235
    assert "interpolation=bicubic" in repr(bb.transform(crop=True))


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(ValueError, match="timm/convnext_tiny") as info:
        build_backbone("timm/convnext_tinyy", weights=None)
    assert "'convnext_tinyy'" in str(info.value)


def test_offline_without_weights_is_a_clear_error():
    from sktransfer.backbones.weights import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="sktransfer weights download timm/"):
        build_backbone("timm/regnetx_002.pycls_in1k", weights="imagenet")


def _clf(name, **params):
    params = {"weights": None, "image_size": 32, "epochs": 3, "finetune_epochs": 2,
              "batch_size": 8, "random_state": 0, **params}
    return TransferClassifier(backbone=name, **params)


@pytest.mark.parametrize("family", ["convnext", "vit"])
def test_unfreeze_2_trains_exactly_the_last_two_blocks(family, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "weights.pth"
    torch.save(create_model(locate(FAMILIES[family], None)).state_dict(), path)
    reference = build_backbone(FAMILIES[family], weights=path)
    reference.resize_input(32)  # as the fit does (a ViT resamples its position embedding)
    X, y = blobs(16, size=32)
    clf = _clf(FAMILIES[family], unfreeze=2, finetune_lr=1e-2)
    clf.set_params(weights=path).fit(X, y)
    trained = clf.net_.module_.blocks
    assert len(trained) == 2 and reference.n_blocks > 2

    def changed(a, b):
        return [k for k, v in a.state_dict().items()
                if v.is_floating_point() and not torch.equal(v, b.state_dict()[k])]
    for got, before in zip(trained, reference.blocks[-2:]):
        assert changed(got, before), "a block of the last two did not train"
    frozen = clf.extractor_.modules
    assert len(frozen) == reference.n_blocks - 2
    for got, before in zip(frozen, reference.blocks):
        assert not changed(got, before), "a frozen block changed"


@pytest.mark.parametrize("family", ["efficientnet", "dinov2"])
def test_cached_uncached_saved_and_pickled_predictions_agree(family, tmp_path):
    X, y = blobs(16, size=32)
    cached = _clf(FAMILIES[family], unfreeze=1).fit(X, y)
    uncached = _clf(FAMILIES[family], unfreeze=1, cache=False).fit(X, y)
    expected = cached.predict_proba(X)
    np.testing.assert_allclose(uncached.predict_proba(X), expected, atol=1e-5)
    cached.save(tmp_path / "m.sktransfer")
    np.testing.assert_array_equal(load(tmp_path / "m.sktransfer").predict_proba(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cached)).predict_proba(X), expected)


def test_pretrained_features_and_onnx_export(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    X, y = blobs(6, size=32)
    feats = PretrainedFeatures(backbone="timm/vit_tiny_patch16_224", weights=None, image_size=32).fit()
    out = feats.transform(X)
    assert out.shape == (6, 192) and np.isfinite(out).all()
    clf = _clf(FAMILIES["vit"], epochs=2).fit(X, y)
    path = tmp_path / "m.onnx"
    clf.export_onnx(path)
    session = ort.InferenceSession(str(path))
    batch = torch.stack([clf.transform_(torch.from_numpy(x).permute(2, 0, 1)) for x in X])
    (proba,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-4)


def test_command_line_trains_and_predicts_with_a_timm_backbone(image_folder, tmp_path):
    from sktransfer.cli import main

    model = tmp_path / "m.sktransfer"
    assert main(["train", str(image_folder), "--backbone", "timm/regnetx_002", "--weights",
                 "none", "--image-size", "32", "--epochs", "2", "--test-size", "0.34",
                 "--out", str(model), "--quiet"]) == 0
    assert load(model).backbone == "timm/regnetx_002"
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(image_folder), "--out", str(out), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 12  # a header and every image


def test_include_top_of_a_timm_model_names_its_outputs():
    feats = PretrainedFeatures(backbone="timm/regnetx_002", weights=None, include_top=True,
                               image_size=32).fit()
    proba = feats.transform(blobs(3, size=32)[0])
    assert proba.shape == (3, 1000)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert list(feats.get_feature_names_out()[:2]) == ["output0", "output1"]  # random: no names
