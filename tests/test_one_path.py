"""One path per job: a model gives the same answers however it was fitted, kept, moved or named.

The equivalence matrix walks one member of every backbone family through
every path that makes or moves a model -- fit, save/load, pickle, ONNX export
frozen; fit, save/load, pickle, clone and refit with the same seed, explain
after load with ``unfreeze=1``, with and without ``crop``, on each CPU engine; the other
tests are the reproductions of bugs where two paths disagreed.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torchvision import models as tv_models

from sktransfer import TransferClassifier, TransferRegressor, load
from sktransfer.backbones import catalog
from sktransfer.backbones.torchvision_family import supported_names
from sktransfer.training.callbacks import KeepBest

from conftest import blobs, requires_imagenet

# One member of each family (the smallest), at the smallest input its network takes.
FAMILIES = {
    "alexnet": 64, "resnet18": 32, "inception_v3": 75, "mobilenet_v3_small": 32,
    "efficientnet_b0": 32, "densenet121": 32, "regnet_x_400mf": 32,
    "shufflenet_v2_x0_5": 32, "mnasnet0_5": 32, "squeezenet1_1": 32, "googlenet": 32,
    "convnext_tiny": 32, "vit_b_32": 32, "swin_t": 32, "maxvit_t": 224,
    "efficientnet_lite0": 32,
}
# The engines take turns across the families, so each one meets every kind of block.
ENGINES = ["torch", "onnxruntime", "openvino"]


def test_every_classification_model_of_torchvision_is_a_backbone_by_its_own_name():
    """The catalog is torchvision's registry: a model it lists is a backbone, described
    in the shipped table that `sktransfer backbones` prints."""
    registry = set(tv_models.list_models(module=tv_models))
    assert set(supported_names()) == registry
    rows = {row["name"] for row in catalog.shipped_rows()}
    assert registry <= rows
    families = {name.rstrip("0123456789_").split("_")[0] for name in FAMILIES}
    assert {"convnext", "vit", "swin", "maxvit", "googlenet"} <= families


@pytest.fixture(scope="module")
def images():
    X, y = blobs(4, size=40)
    return X, np.array(["cat", "dog"])[y]


def _engine(backbone, i):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    if backbone.startswith("vit"):  # 350 MB of ONNX to convert: its attention's export is
        return "torch"              # checked on a small encoder in test_engines
    return ENGINES[i % len(ENGINES)]


@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_path_that_makes_or_moves_a_model_gives_the_same_answer(
        backbone, images, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, y = images
    size = FAMILIES[backbone]
    index = list(FAMILIES).index(backbone)
    for unfreeze, crop in [(0, index % 2 == 0), (1, index % 2 == 1)]:
        params = dict(backbone=backbone, weights=None, image_size=size, epochs=2, dropout=0,
                      unfreeze=unfreeze, finetune_epochs=1, crop=crop,
                      engine=_engine(backbone, index + unfreeze), random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an engine falling back
            clf = TransferClassifier(**params).fit(X, y)
            expected = clf.predict_proba(X)
            where = f"{backbone}, unfreeze={unfreeze}, crop={crop}, engine={clf.engine_}"
            clf.save(tmp_path / "m.sktransfer")
            loaded = load(tmp_path / "m.sktransfer")
            np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6,
                                       err_msg=f"save/load: {where}")
            np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X),
                                       expected, atol=1e-6, err_msg=f"pickle: {where}")
            if unfreeze:  # the seeded fit with both phases, again from a clone
                refit = clone(clf).fit(X, y)
                np.testing.assert_allclose(refit.predict_proba(X), expected, atol=1e-6,
                                           err_msg=f"clone + refit: {where}")
        assert loaded.get_params() == {**clf.get_params(), "verbose": 0}
        assert loaded.transform_.settings() == clf.transform_.settings()
        if unfreeze:  # explain after load: one heatmap per image at its own size
            heatmaps = loaded.explain(X[:2])
            assert [h.shape for h in heatmaps] == [X.shape[1:3]] * 2, where
        elif not backbone.startswith("vit"):  # (the ViT's: as _engine says)
            # the whole network in ONNX, run by ONNX Runtime on the same inputs
            clf.export_onnx(tmp_path / "m.onnx")
            batch = torch.stack([clf.transform_(torch.from_numpy(x).permute(2, 0, 1))
                                 for x in X]).numpy()
            session = ort.InferenceSession(str(tmp_path / "m.onnx"))
            (proba,) = session.run(None, {"images": batch})
            np.testing.assert_allclose(proba, expected, atol=1e-4, err_msg=f"onnx: {where}")


# -- the reproductions ---------------------------------------------------------------


@requires_imagenet
@pytest.mark.parametrize("params", [dict(crop=True),
                                    dict(weights="IMAGENET1K_V1", crop=True, image_size=256)])
def test_a_model_fitted_with_crop_predicts_the_same_after_load(params, images, tmp_path):
    """load used to rebuild the preprocessing from the architecture's DEFAULT weights
    (resize 232, not the fitted file's 256): probabilities moved by up to 0.07."""
    X, y = images
    clf = TransferClassifier(epochs=2, random_state=0, **params).fit(X, y)
    clf.save(tmp_path / "m.sktransfer")
    loaded = load(tmp_path / "m.sktransfer")
    assert loaded.transform_.resize_size == clf.transform_.resize_size
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_a_file_without_recorded_preprocessing_loads_with_one_warning(images, tmp_path):
    """Files of 0.1.0 record no preprocessing: derived from the weights' defaults, said."""
    with pytest.warns(UserWarning, match="does not record its preprocessing"):
        model = load("tests/data/classifier-0.1.0.sktransfer")
    assert model.transform_.crop_size == [64]


@pytest.mark.parametrize("estimator", [TransferClassifier, TransferRegressor])
@pytest.mark.parametrize("backbone", ["regnet_x_400mf", "regnet_y_400mf"])
def test_regnets_load(backbone, estimator, images, tmp_path):
    """RegNet's builder computes its widths with tensors, which the meta device refused."""
    X, y = images
    target = (y == "cat").astype(float) if estimator is TransferRegressor else y
    model = estimator(backbone=backbone, weights=None, image_size=32, epochs=1,
                      random_state=0).fit(X, target)
    model.save(tmp_path / "m.sktransfer")
    np.testing.assert_array_equal(load(tmp_path / "m.sktransfer").predict(X), model.predict(X))


def test_the_best_epoch_kept_is_a_copy_of_its_weights(images):
    """KeepBest's snapshot shared storage with the network in training, so Ctrl-C saved the
    last epoch's weights under the name of the best one."""
    X, y = images
    seen = {}

    class Record(KeepBest):  # what the weights were at the end of each epoch
        def on_epoch_end(self, net, **kwargs):
            seen[net.history[-1]["epoch"]] = {k: v.clone() for k, v in
                                              self.estimator.fitted_state().items()}
            super().on_epoch_end(net, **kwargs)

    clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=6,
                             lr=0.05, head_solver="optimizer", random_state=0)
    keep = Record(clf)
    clf.set_params(callbacks=[("keep", keep)]).fit(X, y, validation_data=(X[::-1], y[::-1]))
    best = keep.best_
    live = clf.fitted_state()
    kept = best["model"]["state"]
    np.testing.assert_equal({k: v.numpy() for k, v in kept.items()},
                            {k: v.numpy() for k, v in seen[best["epoch"]].items()})
    if best["epoch"] != len(clf.history_):  # a later epoch changed the live weights
        assert any(not torch.equal(kept[k], live[k]) for k in kept)
    net = dict(clf.net_.module_.named_parameters())
    assert all(kept[f"net.{k}"].data_ptr() != p.data_ptr() for k, p in net.items())


@pytest.mark.parametrize("backbone", ["MobileNet_V3_Large", "ResNet50", "MOBILENET"])
def test_impossible_settings_are_refused_before_any_download_whatever_the_spelling(
        backbone, images, fresh_torch_home, monkeypatch):
    """catalog.row did not lower-case names: 'ResNet50' with unfreeze=500 asked the network
    for weights (here: offline, WeightsNotFoundError) instead of refusing the setting."""
    monkeypatch.delenv("SKTRANSFER_OFFLINE")  # a download would be attempted, and fail
    from sktransfer.backbones import weights as weights_mod

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(weights_mod, "download_weights", no_download)
    X, y = images
    with pytest.raises(ValueError, match="unfreeze=500 but backbone .* has only"):
        TransferClassifier(backbone=backbone, unfreeze=500).fit(X, y)
    assert catalog.normalise(backbone) in tv_models.list_models(module=tv_models)
