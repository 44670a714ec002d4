"""timm weights from the Hugging Face Hub, against a hub on 127.0.0.1 started here.

The server speaks the hub's file protocol (tests/fake_hub.py) and serves a
real timm model's ``model.safetensors``, made in the test; ``HF_ENDPOINT``
points at it.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("safetensors")

from sktransfer import timm_family  # noqa: E402
from sktransfer.backbones.weights import WeightsDownloadError, WeightsNotFoundError  # noqa: E402

from cli_helpers import run_here  # noqa: E402
from fake_hub import FakeHub  # noqa: E402

NAME = "timm/regnetx_002.pycls_in1k"
REPO = "timm/regnetx_002.pycls_in1k"


@pytest.fixture(scope="module")
def weights_file():
    """A real regnetx_002 state_dict as timm publishes it (safetensors), random weights."""
    from safetensors.torch import save

    torch.manual_seed(0)
    model = timm_family.create_model(timm_family.locate(NAME, None))
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture
def hub(weights_file, monkeypatch):
    """The fake hub with the file, downloads allowed (the suite forbids them otherwise)."""
    import huggingface_hub.constants

    server = FakeHub(REPO, {"model.safetensors": weights_file})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield server
    server.stop()


def _weights_left(folder):
    """Files of weights (whole or partial) in a Hugging Face cache folder; its locks and
    refs are not weights."""
    return sorted(p.name for p in folder.rglob("*")
                  if p.is_file() and p.parent.name not in ("refs", ".locks")
                  and not p.name.endswith(".lock") and p.name != "CACHEDIR.TAG")


def test_first_use_downloads_then_the_cache_answers(hub, tmp_path, weights_file):
    from safetensors.torch import load

    path = timm_family.fetch(NAME, cache_dir=tmp_path)
    assert path.read_bytes() == weights_file
    assert [m for m, _ in hub.requests] == ["HEAD", "HEAD", "GET"]  # metadata, then the file
    assert timm_family.fetch(NAME, cache_dir=tmp_path) == path
    assert len(hub.requests) == 3  # the cache answers: no request
    served = load(weights_file)
    loaded = timm_family.create_model(timm_family.locate(NAME, str(path))).state_dict()
    key = next(iter(served))
    assert torch.equal(loaded[key], served[key])


@pytest.mark.parametrize("mode", ["truncated", "altered"])
def test_a_damaged_download_leaves_nothing_in_the_cache(hub, tmp_path, mode):
    hub.mode = mode
    with pytest.raises(WeightsDownloadError, match="regnetx_002") as info:
        timm_family.fetch(NAME, cache_dir=tmp_path)
    assert "\n" not in str(info.value).strip()
    assert _weights_left(tmp_path) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_fails_fast_in_one_line(hub, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")
    start = time.perf_counter()
    with pytest.raises(WeightsDownloadError, match="Could not download the weights") as info:
        timm_family.fetch(NAME, cache_dir=tmp_path)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value).strip()
    out, err = capfd.readouterr()
    assert "Retry" not in out + err  # no retry messages


def test_a_silent_server_times_out(hub, tmp_path, monkeypatch):
    from sktransfer.backbones import weights as weights_mod

    monkeypatch.setattr(weights_mod, "DOWNLOAD_TIMEOUT", 0.5)
    hub.mode = "silent"
    start = time.perf_counter()
    with pytest.raises(WeightsDownloadError):
        timm_family.fetch(NAME, cache_dir=tmp_path)
    assert time.perf_counter() - start < 5
    assert _weights_left(tmp_path) == []


def test_offline_makes_no_request(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="sktransfer weights download timm/"):
        timm_family.fetch(NAME, cache_dir=tmp_path)
    assert hub.requests == []


def test_downloaded_into_a_folder_then_used_offline(hub, tmp_path, weights_file):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "SKTRANSFER_OFFLINE": "0",
           "HF_HUB_OFFLINE": "0"}
    folder = tmp_path / "carried"
    got = run_here("weights", "download", NAME, "--to", folder)  # hub: this process's endpoint
    assert got.returncode == 0, got.stderr
    requests = len(hub.requests)
    code = ("import numpy as np, sys\n"
            "from sktransfer import TransferClassifier\n"
            "X = np.random.RandomState(0).randint(0, 255, (4, 40, 40, 3), dtype=np.uint8)\n"
            f"clf = TransferClassifier(backbone={NAME!r}, image_size=32, epochs=1)\n"
            "print(clf.fit(X, [0, 1, 0, 1]).weights_)\n")
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(folder)}
    used = subprocess.run([sys.executable, "-c", code], env=offline, capture_output=True,
                          text=True, timeout=300)
    assert used.returncode == 0, used.stderr
    assert len(hub.requests) == requests  # offline: the folder answered
    assert np.any([line.strip() for line in used.stdout.splitlines()])


def test_a_pinned_revision_is_the_one_fetched(hub, tmp_path, weights_file):
    path = timm_family.fetch(f"{NAME}@{hub.commit}", cache_dir=tmp_path)
    assert path.read_bytes() == weights_file and hub.commit in str(path)
    assert hub.requests and all(f"/resolve/{hub.commit}/" in p for _, p in hub.requests)
    assert timm_family.fetch(f"{NAME}@{hub.commit}", cache_dir=tmp_path) == path  # cached
    with pytest.raises(WeightsDownloadError, match="model.safetensors") as info:
        timm_family.fetch(f"{NAME}@v9.9", cache_dir=tmp_path)  # a revision the hub lacks
    assert "\n" not in str(info.value).strip()
    assert timm_family.timm_name(f"{NAME}@v9.9") == "regnetx_002.pycls_in1k"


def test_a_pinned_backbone_name_fetches_its_revision_once(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from sktransfer.backbones.building import build_backbone

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    calls = []
    original = timm_family.fetch
    monkeypatch.setattr(timm_family, "fetch",
                        lambda *a, **k: calls.append(a) or original(*a, **k))
    bb = build_backbone(f"{NAME}@{hub.commit}")
    assert [c[0] for c in calls] == [f"{NAME}@{hub.commit}"]  # located once, pinned
    assert bb.weights_tag.endswith(f"@{hub.commit}") and bb.name == f"{NAME}@{hub.commit}"
    assert bb.record.path.is_relative_to(tmp_path)
