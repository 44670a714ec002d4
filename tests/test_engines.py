"""The inference engines: the same features as torch, chosen as documented, never saved."""

import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import PretrainedFeatures, TransferClassifier, load
from sktransfer.backbones.building import build_backbone
from sktransfer.extraction.engines import available, resolve_engine
from sktransfer.backbones.cut import cut_backbone
from sktransfer.extraction.extractor import Extractor
from sktransfer import clear_caches  # noqa: E402

ENGINES = [e for e in ("openvino", "onnxruntime") if available(e)]
FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


def _backbone(name):
    torch.manual_seed(0)
    bb = build_backbone(name, weights=None)
    for m in (mm for b in bb.blocks for mm in b.modules()):
        if isinstance(m, nn.BatchNorm2d):  # statistics that are not the identity
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return bb


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "efficientnet_b0"])
@pytest.mark.parametrize("n_trainable", [0, 2], ids=["pooled", "cut"])
def test_each_engine_gives_torchs_features(engine, name, n_trainable):
    cut = cut_backbone(_backbone(name), n_trainable, image_size=64)
    X = np.random.RandomState(0).randint(0, 256, (6, 70, 90, 3), dtype=np.uint8)
    reference = Extractor(cut.frozen, cut.transform).run(X, cache=False)
    out = Extractor(cut.frozen, cut.transform, engine=engine).run(X, cache=False)
    assert out.shape == reference.shape
    scale = float(reference.abs().max())
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4 * scale)


def test_engines_are_chosen_as_documented(monkeypatch):
    # As the docstrings and docs/performance.md say: OpenVINO when installed, else torch.
    assert resolve_engine("auto", "cpu") == ("openvino" if available("openvino") else "torch")
    assert resolve_engine("auto", "cuda") == "torch"  # GPUs stay with torch
    assert resolve_engine("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_engine("onnxruntime", "cuda")
    monkeypatch.setattr("sktransfer.extraction.engines.AUTO_ORDER", ("onnxruntime", "openvino"))
    assert resolve_engine("auto", "cpu") == ("onnxruntime" if available("onnxruntime")
                                             else "torch")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert resolve_engine("auto", "cpu") == ("openvino" if available("openvino") else "torch")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert resolve_engine("auto", "cpu") == "torch"
    with pytest.raises(ImportError, match=r"pip install 'sktransfer\[openvino\]'"):
        resolve_engine("openvino", "cpu")


def test_auto_falls_back_silently_and_explicit_asks_for_the_extra(tiny, monkeypatch):
    X, y = tiny
    monkeypatch.setattr("sktransfer.extraction.engines.AUTO_ORDER", ("onnxruntime", "openvino"))
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TransferClassifier(**FAST).fit(X, y).engine_ == "torch"
    with pytest.raises(ImportError, match="engine='openvino' needs the openvino package"):
        TransferClassifier(**FAST, engine="openvino").fit(X, y)


@pytest.mark.parametrize("engine", ["torch", *ENGINES])
def test_save_load_and_pickle_with_every_engine(engine, tiny, tmp_path):
    X, y = tiny
    clf = TransferClassifier(**FAST, engine=engine).fit(X, y)
    assert clf.engine_ == engine
    proba = clf.predict_proba(X)
    clf.save(tmp_path / "m.sktransfer")
    loaded = load(tmp_path / "m.sktransfer")
    assert loaded.engine_ == engine
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-5)
    blob = pickle.dumps(clf)
    weights = sum(p.numel() * 4 for m in [*clf.extractor_.modules, clf.net_.module_]
                  for p in m.parameters())
    assert len(blob) < 1.3 * weights  # the compiled engine never travels
    np.testing.assert_allclose(pickle.loads(blob).predict_proba(X), proba, atol=1e-5)


@pytest.mark.skipif(not available("openvino"), reason="the openvino extra is not installed")
def test_a_model_auto_ran_with_openvino_loads_where_openvino_is_missing(tiny, tmp_path,
                                                                      monkeypatch):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    assert clf.engine_ == "openvino"  # "auto" on the CPU
    proba = clf.predict_proba(X)
    clf.save(tmp_path / "m.sktransfer")
    monkeypatch.setitem(sys.modules, "openvino", None)  # the machine it is deployed on
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" falls back in silence, as in fit
        loaded = load(tmp_path / "m.sktransfer")
        assert loaded.engine_ == "torch"
        np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-5)
        # the same with a pickled one (joblib, Dask workers)
        np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba,
                                   atol=1e-5)


def test_engines_are_keyed_apart_in_the_cache(tiny):
    X, y = tiny
    keys = {e: TransferClassifier(**FAST, engine=e).fit(X, y).extractor_.key
            for e in ["torch", *ENGINES]}
    assert len(set(keys.values())) == len(keys)


@pytest.mark.skipif(not ENGINES, reason="no other engine installed")
def test_pretrained_features_use_the_engine(tiny):
    X, _ = tiny
    engine = ENGINES[0]
    fast = PretrainedFeatures(backbone="resnet18", weights=None, image_size=32, engine=engine)
    assert fast.fit(X).engine_ == engine and fast.transform(X).shape == (16, 512)


INT8 = [e for e in ("onnxruntime-int8", "openvino-int8") if available(e)]
int8 = pytest.mark.parametrize("engine", INT8)


@int8
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_int8_features_are_close_to_float32_ones(name, engine):
    cut = cut_backbone(_backbone(name), 0, image_size=64)
    X = np.random.RandomState(0).randint(0, 256, (12, 70, 90, 3), dtype=np.uint8)
    reference = Extractor(cut.frozen, cut.transform).run(X, cache=False)
    extractor = Extractor(cut.frozen, cut.transform, engine=engine)
    out = extractor.run(X, cache=False)
    assert extractor.calibration is not None
    cosine = torch.nn.functional.cosine_similarity(out, reference, dim=1)
    assert cosine.min() > 0.95, cosine
    assert not torch.equal(out, reference)  # quantized indeed


@int8
def test_int8_calibration_is_deterministic_and_keys_the_cache(engine):
    cut = cut_backbone(_backbone("resnet18"), 0, image_size=32)
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (40, 40, 40, 3), dtype=np.uint8)

    def calibrated(images):
        extractor = Extractor(cut.frozen, cut.transform, engine=engine)
        extractor.run(images, cache=False)
        return extractor

    first = calibrated(X)
    # the same images in another order: the same 32 chosen by digest, the same ranges
    assert calibrated(X[::-1].copy()).key == first.key
    other = calibrated(rng.randint(0, 256, (40, 40, 40, 3), dtype=np.uint8))
    assert other.calibration != first.calibration and other.key != first.key


@int8
def test_int8_models_save_load_and_pickle_without_their_images(tiny, tmp_path, engine):
    X, y = tiny
    clf = TransferClassifier(**FAST, engine=engine).fit(X, y)
    proba = clf.predict_proba(X)
    clf.save(tmp_path / "m.sktransfer")

    clear_caches()  # rebuilt from the saved calibration, not reused
    loaded = load(tmp_path / "m.sktransfer")
    assert loaded.extractor_.calibration == clf.extractor_.calibration
    other = np.random.RandomState(1).randint(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict_proba(other), clf.predict_proba(other),
                               atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba,
                               atol=1e-6)


@pytest.mark.skipif(len(INT8) < 2, reason="needs both int8 engines")
def test_int8_engines_run_the_same_quantized_graph(tiny):
    X, _ = tiny
    cut = cut_backbone(_backbone("resnet18"), 0, image_size=32)
    outs = {}
    for engine in INT8:
        extractor = Extractor(cut.frozen, cut.transform, engine=engine)
        outs[engine] = (extractor.run(X, cache=False), extractor.calibration, extractor.key)
    (a, ranges_a, key_a), (b, ranges_b, key_b) = outs.values()
    assert ranges_a == ranges_b  # one calibration, two runtimes
    assert key_a != key_b  # whose results differ in rounding: keyed apart
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    assert cosine.min() > 0.95, cosine


def test_an_engine_missing_one_of_its_packages_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"needs the openvino package: "
                                          r"pip install 'sktransfer\[openvino\]'"):
        resolve_engine("openvino-int8", "cpu")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"openvino and onnxruntime packages: "
                                          r"pip install 'sktransfer\[openvino,onnxruntime\]'"):
        resolve_engine("openvino-int8", "cpu")


def test_onnx_missing_names_the_engines_own_extra(monkeypatch):
    # every engine but torch goes through ONNX; each runtime's extra brings it
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"needs the onnx package: "
                                          r"pip install 'sktransfer\[openvino\]'"):
        resolve_engine("openvino", "cpu")
    with pytest.raises(ImportError, match=r"needs the onnx package: "
                                          r"pip install 'sktransfer\[onnxruntime\]'"):
        resolve_engine("onnxruntime-int8", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_engine("auto", "cpu") == "torch"  # silent, whatever AUTO_ORDER holds


def test_a_network_the_exporter_cannot_take_falls_back_without_printing_its_graph(capfd):
    # torch's TorchScript exporter leaves its C++ log on: a failed export used to print the
    # whole graph (hundreds of lines for a ViT) to standard output before the fallback
    class Singular(nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x)[1].flatten(1)

    pytest.importorskip("onnx")
    from sktransfer.extraction.engines import to_onnx

    for _ in range(2):  # the second export too: the log was left on by the first
        with pytest.raises(Exception, match="svd"):
            to_onnx(nn.Sequential(Singular()), torch.zeros(1, 3, 8, 8))
    out, err = capfd.readouterr()
    assert out == "" and "graph" not in err


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_attention_runs_on_the_cpu_engines(engine):
    """In inference, torch runs attention by a fused kernel that has no ONNX form: a ViT
    fell back to torch. The export now takes attention's plain operations."""
    pytest.importorskip(engine)
    from sktransfer.extraction.engines import compile_prefix

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    encoder = nn.Sequential(nn.Flatten(2), Transpose(), nn.TransformerEncoder(
        layer, 2, enable_nested_tensor=False)).eval().requires_grad_(False)  # frozen
    x = torch.randn(3, 16, 4, 4)
    with torch.no_grad():
        expected = encoder(x)
    run = compile_prefix(list(encoder), x.shape[1:], engine)
    np.testing.assert_allclose(np.asarray(run(x)), expected.numpy(), atol=1e-5)
    assert torch.backends.mha.get_fastpath_enabled()  # the fast path is back for torch


class Transpose(nn.Module):
    def forward(self, x):  # noqa: D102 - torch convention
        return x.transpose(1, 2)
