"""Fitted models on the Hugging Face Hub: the folder ``save_pretrained`` writes, ``hf://`` names
read through a Hub on 127.0.0.1 (the file protocol huggingface_hub speaks), then offline from
the cache."""

import zipfile

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

from sktransfer import ModelFileError, TransferClassifier, TransferRegressor, load  # noqa: E402

from conftest import blobs  # noqa: E402
from fake_hub import FakeHub  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)
REPO = "someone/pets"
FILES = ("README.md", "config.json", "model.safetensors")


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(16)
    clf = TransferClassifier(**FAST, unfreeze=1, finetune_epochs=1)
    return X, clf.fit(X, np.array(["cat", "dog"])[y])


def test_save_pretrained_writes_a_hub_folder_that_load_reads(fitted, tmp_path):
    X, clf = fitted
    folder = clf.save_pretrained(tmp_path / "pets")
    assert sorted(p.name for p in folder.iterdir()) == list(FILES)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sktransfer\npipeline_tag: image-classification")
    assert "2 classes: cat, dog" in card and "`resnet18`, its last 1 block(s) fine-tuned" in card
    loaded = load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.get_params() == clf.get_params()
    clf.save(tmp_path / "m.sktransfer")  # the folder holds the model file's own members
    with zipfile.ZipFile(tmp_path / "m.sktransfer") as zf:
        assert zf.read("model.safetensors") == (folder / "model.safetensors").read_bytes()
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ModelFileError, match="do not match the hash recorded"):
        load(folder)


def test_a_regressors_card_names_its_targets(tmp_path):
    X, y = blobs(8)
    reg = TransferRegressor(**FAST).fit(X, np.c_[10.0 + y, 3.0 - y])
    card = (reg.save_pretrained(tmp_path / "r") / "README.md").read_text()
    assert "pipeline_tag: image-regression" in card and "2 number(s): output 0, output 1" in card


def test_the_card_lists_the_metrics_it_is_given_and_refuses_others(fitted, tmp_path):
    X, clf = fitted
    card = (clf.save_pretrained(tmp_path / "m", metrics={"accuracy": 0.9375, "f1 macro": 0.9})
            / "README.md").read_text()
    front = card.split("---")[1]
    assert 'metrics:\n- "accuracy"\n- "f1 macro"' in front
    assert "| accuracy | 0.9375 |\n| f1 macro | 0.9 |" in card
    assert "Evaluation" not in (clf.save_pretrained(tmp_path / "n") / "README.md").read_text()
    for bad, match in (({"accuracy": "high"}, r"metrics\['accuracy'\] = 'high'"),
                       ([0.9], "dict of name -> number")):
        with pytest.raises(TypeError, match=match):
            clf.save_pretrained(tmp_path / "bad", metrics=bad)
    assert not (tmp_path / "bad").exists()  # refused before anything is written


@pytest.fixture
def hub(fitted, tmp_path, monkeypatch):
    """The repository on a Hub on 127.0.0.1, an empty cache, downloads allowed."""
    import huggingface_hub.constants

    folder = fitted[1].save_pretrained(tmp_path / "repo")
    server = FakeHub(REPO, {name: (folder / name).read_bytes() for name in FILES})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    yield server
    server.stop()


def test_a_hub_name_loads_once_then_offline_from_the_cache(fitted, hub, monkeypatch):
    X, clf = fitted
    model = load(f"hf://{REPO}")
    np.testing.assert_array_equal(model.predict_proba(X), clf.predict_proba(X))
    fetched = [path for method, path in hub.requests if method == "GET"]
    assert sorted(p.rsplit("/", 1)[1] for p in fetched) == ["config.json", "model.safetensors"]
    seen = len(hub.requests)
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "1")
    for name in (f"hf://{REPO}", f"hf://{REPO}@{hub.commit}"):  # a pinned commit too
        np.testing.assert_array_equal(load(name).predict_proba(X), clf.predict_proba(X))
    assert len(hub.requests) == seen  # nothing asked of the Hub
    with pytest.raises(ModelFileError, match="not in the Hugging Face cache, and "
                       "SKTRANSFER_OFFLINE or HF_HUB_OFFLINE forbids downloading it"):
        load("hf://someone/other")
    with pytest.raises(ValueError, match="not a Hub model name; write hf://owner/name"):
        load("hf://pets")


def test_a_damaged_download_is_refused_and_not_kept(fitted, hub, tmp_path):
    hub.mode = "altered"
    with pytest.raises(ModelFileError, match="Could not download"):
        load(f"hf://{REPO}")
    hub.mode = "ok"
    X, clf = fitted
    np.testing.assert_array_equal(load(f"hf://{REPO}").predict_proba(X), clf.predict_proba(X))


def test_pushing_says_it_needs_the_network_before_any_request(fitted, monkeypatch):
    # the upload itself needs the real Hub (accounts, commits): not reachable from here
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "1")
    with pytest.raises(ModelFileError, match="pushing to someone/pets needs the network"):
        fitted[1].push_to_hub(REPO)
