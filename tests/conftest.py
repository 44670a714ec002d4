"""Shared fixtures: tiny real images, image folders, ImageNet availability."""

import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sktransfer import clear_caches  # noqa: E402

# Nothing in the suite may reach beyond this machine: downloads are forbidden
# unless a test lifts this against its own server on 127.0.0.1.
os.environ["SKTRANSFER_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

# Keep the suite's torch single-threaded per process: CI has 2 cores and
# GridSearchCV(n_jobs=2) tests start two workers.
# Under pytest-xdist each worker gets its share of the cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
torch.set_num_threads(_THREADS)
# The processes the tests start (the command line, a second interpreter) get the same
# share: by default each would run one thread per core beside the workers' own, and
# threads that wait by spinning take the cores the other workers need.
os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))


def _imagenet_available():
    from sktransfer.backbones import imagenet_on_this_machine

    try:
        return imagenet_on_this_machine("mobilenet_v2")
    except ValueError:
        return False


#: Whether the real ImageNet MobileNetV2 weights are here (installed by `make test`).
HAVE_IMAGENET = _imagenet_available()
requires_imagenet = pytest.mark.skipif(
    not HAVE_IMAGENET,
    reason="ImageNet MobileNetV2 weights not found offline (run `make test`, which installs them)",
)


def blobs(n, size=40, seed=0):
    """n RGB uint8 images whose class (0 or 1) is a bright square top-left or bottom-right."""
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 60, (n, size, size, 3)).astype(np.uint8)
    y = np.arange(n) % 2
    half = size // 2
    for i in range(n):
        if y[i] == 0:
            X[i, :half, :half] = 230
        else:
            X[i, half:, half:] = 230
    return X, y


@pytest.fixture(scope="module")
def r18_weights(tmp_path_factory):
    """A fixed random ResNet-18 state_dict file: a known 'pretrained' starting point."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "r18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture
def tiny():
    """16 tiny images of two classes."""
    return blobs(16)


@pytest.fixture
def image_folder(tmp_path):
    """root/<class>/<image> with PNG and JPEG files of different sizes and modes."""
    X, y = blobs(12, size=48)
    root = tmp_path / "images"
    for i, (img, label) in enumerate(zip(X, y)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img).resize((48 + 4 * i, 40 + 2 * i))
        if i % 3 == 0:
            pil.save(folder / f"img{i}.jpg", quality=95)
        elif i % 3 == 1:
            pil.convert("L").save(folder / f"img{i}.png")
        else:
            pil.convert("RGBA").save(folder / f"img{i}.png")
    (root / "class_0" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def fresh_torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so that only what a test puts there is found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def decoded(monkeypatch):
    """Counts images decoded (= pushed through a frozen prefix)."""
    from sktransfer.extraction import extractor

    counter = {"n": 0}
    original = extractor.decode_batch

    def counting(images, transform, indices, n_jobs):
        counter["n"] += len(indices)
        return original(images, transform, indices, n_jobs)

    monkeypatch.setattr(extractor, "decode_batch", counting)
    clear_caches()
    yield counter
    clear_caches()
