"""Hostile files and unlucky disks: bounded reads, a cache that degrades instead of failing.

Real mechanisms: a real zip bomb, a real full disk (a small tmpfs when this
runs as root and may mount; else a process limited by RLIMIT_FSIZE), a
read-only mount, a real SIGKILL of a writer process, a lock held by another
process.  Each test says which mechanism ran (``-rs``/``-v`` output names
skips and their reasons).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer import ModelFileError, TransferClassifier, load
from sktransfer.persistence.model_file import WEIGHTS_MEMBER
from sktransfer.extraction import extractor as extractor_mod
from sktransfer.extraction.cache import DiskStore
from sktransfer.inputs.images import as_images

from cli_helpers import run_here
from disks import remount_read_only, tmpfs
from sktransfer import clear_caches  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


@pytest.fixture(autouse=True)
def _empty_memory():
    clear_caches()
    clear_caches()  # each test sees its own first warning
    yield
    clear_caches()




# -- model files -----------------------------------------------------------------


def _saved(tmp_path, tiny):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    clf.save(tmp_path / "good.sktransfer")
    return tmp_path / "good.sktransfer"


def _bomb(good, path, inflated):
    """A model file whose weights member inflates to ``inflated`` bytes of zeros."""
    with zipfile.ZipFile(good) as zf:
        config = zf.read("config.json")
    # the fastest deflate: a gigabyte of zeros to compress
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("config.json", config)
        chunk = bytes(1 << 24)
        with zf.open(WEIGHTS_MEMBER, "w", force_zip64=True) as fh:
            for _ in range(inflated // len(chunk)):
                fh.write(chunk)
    return path


PEAK_RSS = textwrap.dedent("""
    import json, resource, sys
    import sktransfer
    from sktransfer import load, ModelFileError
    sktransfer.TransferClassifier  # the imports a load needs, before the baseline
    import sktransfer.classifier, torch
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load(sys.argv[1])
        outcome = "loaded"
    except ModelFileError as exc:
        outcome = str(exc)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "grew_mb": (peak - base) / 1024}))
""")


def test_a_zip_bomb_model_file_is_refused_in_bounded_memory(tmp_path, tiny):
    bomb = _bomb(_saved(tmp_path, tiny), tmp_path / "bomb.sktransfer", 1 << 30)
    assert bomb.stat().st_size < 5 << 20  # a few MB on disk, 1 GiB inflated
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bomb)], capture_output=True,
                            text=True, timeout=120)
    report = json.loads(result.stdout)
    assert "inflates" in report["outcome"] and WEIGHTS_MEMBER in report["outcome"], report
    assert report["grew_mb"] < 200, report


def test_declared_sizes_over_the_limit_are_refused_before_reading(tmp_path, tiny, monkeypatch):
    good = _saved(tmp_path, tiny)
    monkeypatch.setenv("SKTRANSFER_MAX_MODEL_BYTES", "1K")
    with pytest.raises(ModelFileError, match=r"declares \d+ bytes, over the limit of 1024"):
        load(good)
    monkeypatch.delenv("SKTRANSFER_MAX_MODEL_BYTES")
    assert load(good).predict(tiny[0]).shape == (16,)


def test_unexpected_or_missing_members_are_refused(tmp_path, tiny):
    good = _saved(tmp_path, tiny)
    extra = tmp_path / "extra.sktransfer"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(extra, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("payload.py", "print('hello')")
    with pytest.raises(ModelFileError, match="unexpected: payload.py"):
        load(extra)
    missing = tmp_path / "missing.sktransfer"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(missing, "w") as dst:
        dst.writestr("config.json", src.read("config.json"))
    with pytest.raises(ModelFileError, match=f"missing: {WEIGHTS_MEMBER}"):
        load(missing)


def test_an_oversized_weights_file_is_refused_unread(tmp_path, tiny):
    huge = tmp_path / "weights.pt"
    with open(huge, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: 64 MB declared, nothing to read
    small = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    X, y = tiny
    with pytest.raises(ValueError, match="far more than the weights of this architecture"):
        TransferClassifier(backbone=small, weights=huge, image_size=32, epochs=1).fit(X, y)


# -- cache entries ---------------------------------------------------------------


def test_an_oversized_cache_entry_is_ignored_and_recomputed(tmp_path, tiny, decoded):
    X, y = tiny
    clf = TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)
    entry = sorted(tmp_path.rglob("*.npy"))[0]
    with open(entry, "r+b") as fh:
        fh.truncate(256 << 20)  # sparse: a huge "entry"
    clear_caches()
    decoded["n"] = 0
    with pytest.warns(RuntimeWarning, match="more than an entry of this network holds"):
        again = TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)
    assert decoded["n"] == 1  # only that entry was recomputed
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    assert entry.stat().st_size < 1 << 20  # and rewritten as a real entry


# -- a cache that degrades -------------------------------------------------------


def _reference(X, y):
    clear_caches()
    out = TransferClassifier(**FAST, cache=False).fit(X, y).predict_proba(X)
    clear_caches()
    return out


FILL_DISK = textwrap.dedent("""
    import json, resource, signal, sys, warnings
    import numpy as np
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    from conftest import blobs
    from sktransfer import TransferClassifier
    X, y = blobs(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=2,
                                 random_state=0, cache_dir=sys.argv[1], unfreeze=1,
                                 finetune_epochs=1).fit(X, y)
    print(json.dumps({"warnings": [str(w.message) for w in caught],
                      "proba": clf.predict_proba(X).tolist()}))
""")


def test_a_full_disk_warns_once_and_the_fit_goes_on(tmp_path, tiny):
    X, y = tiny
    kwargs = dict(FAST, unfreeze=1, finetune_epochs=1)
    clear_caches()
    reference = TransferClassifier(**kwargs, cache=False).fit(X, y).predict_proba(X)
    clear_caches()
    disk = tmp_path / "disk"
    with tmpfs(disk, "24k") as mounted:
        if mounted:  # a real full disk
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                proba = TransferClassifier(**kwargs, cache_dir=disk).fit(X, y).predict_proba(X)
            messages = [str(w.message) for w in caught]
        else:  # no mount allowed: a process whose file writes are capped (RLIMIT_FSIZE)
            disk.mkdir(exist_ok=True)
            result = subprocess.run(
                [sys.executable, "-c", FILL_DISK, str(disk)], capture_output=True, text=True,
                cwd=Path(__file__).parent, timeout=300)
            assert result.returncode == 0, result.stderr
            out = json.loads(result.stdout.splitlines()[-1])
            messages, proba = out["warnings"], np.array(out["proba"])
    failures = [m for m in messages if "disk cache" in m and "failed while writing" in m]
    assert len(failures) == 1, messages  # one warning, not one per image
    assert "continuing without it" in failures[0]
    np.testing.assert_allclose(proba, reference, atol=1e-5)


def test_a_read_only_cache_is_read_and_never_fails_a_fit(tmp_path, tiny, decoded):
    X, y = tiny
    reference = _reference(X, y)
    folder = tmp_path / "ro"
    with tmpfs(folder, "8m") as mounted:
        if not mounted and os.geteuid() == 0:
            pytest.skip("root without mount: no real read-only folder to be had")
        TransferClassifier(**FAST, cache_dir=folder).fit(X, y)  # fill it
        if mounted:  # a read-only file system
            remount_read_only(folder)
        else:  # a non-root user's read-only folders
            for path in [folder, *folder.rglob("*")]:
                path.chmod(0o555 if path.is_dir() else 0o444)
        clear_caches()
        decoded["n"] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # reading a complete read-only cache: no warning
            proba = TransferClassifier(**FAST, cache_dir=folder).fit(X, y).predict_proba(X)
        assert decoded["n"] == 0  # every activation came from the read-only disk
        np.testing.assert_allclose(proba, reference, atol=1e-5)
        clear_caches()
        with pytest.warns(RuntimeWarning, match="failed while"):  # new entries cannot be written
            other = TransferClassifier(**{**FAST, "image_size": 40}, cache_dir=folder).fit(X, y)
        assert other.predict(X).shape == (16,)


def test_an_unusable_cache_dir_warns_and_the_fit_goes_on(tmp_path, tiny):
    X, y = tiny
    reference = _reference(X, y)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="failed while"):
        clf = TransferClassifier(**FAST, cache_dir=not_a_folder / "cache").fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference, atol=1e-5)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from sktransfer.extraction.extractor import Extractor
    from torch import nn
    import torch
    torch.manual_seed(0)
    prefix = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    from sktransfer.backbones.building import build_backbone
    transform = build_backbone("resnet18", weights=None).transform(96)
    X = np.random.RandomState(0).randint(0, 256, (4000, 20, 20, 3), dtype=np.uint8)
    Extractor(prefix, transform).run(X, cache=False, cache_dir=sys.argv[1], batch_size=8)
""")


def test_a_writer_killed_mid_write_leaves_a_cache_others_use(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.rglob("*.npy"))) < 40 and time.time() < deadline:
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)  # mid-run, holding the lock, likely mid-write
    finally:
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    written = len(list(tmp_path.rglob("*.npy")))
    assert 40 <= written < 4000
    torch.manual_seed(0)
    prefix = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    from sktransfer.backbones.building import build_backbone
    transform = build_backbone("resnet18", weights=None).transform(96)
    X = np.random.RandomState(0).randint(0, 256, (60, 20, 20, 3), dtype=np.uint8)
    extractor = extractor_mod.Extractor(prefix, transform)
    fresh = extractor.run(X, cache=False)
    t = time.time()
    from_disk = extractor.run(X, cache=False, cache_dir=tmp_path)  # the dead writer's lock is free
    assert time.time() - t < 60
    torch.testing.assert_close(from_disk, fresh)
    store = DiskStore(tmp_path)
    key = extractor.key
    from sktransfer.inputs.images import as_images
    images = as_images(X)
    for i in range(60):  # every entry there now is complete and right
        torch.testing.assert_close(store.get(key, images.content_key(i)), fresh[i])
    # A temporary file of the killed writer is never read, and pruning removes it once stale.
    leftover = tmp_path / key / ".tmp-killed.npy"
    leftover.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    store.prune(1 << 40)
    assert not leftover.exists()


HOLDER = textwrap.dedent("""
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_lock_held_too_long_is_not_waited_for_forever(tmp_path, tiny, monkeypatch):
    X, y = tiny
    reference = _reference(X, y)
    clf = TransferClassifier(**FAST, cache=False)
    clf.fit(X[:2], y[:2])  # the prefix key, to find the lock file
    key = clf.extractor_.key
    (tmp_path / key).mkdir()
    image = as_images(X).content_key(3)  # another process claims one image, and hangs
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / key / f"{image}.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("SKTRANSFER_CACHE_LOCK_TIMEOUT", "1")
        t = time.time()
        with pytest.warns(RuntimeWarning, match="held a cache claim"):
            proba = TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y).predict_proba(X)
        assert time.time() - t < 30
    finally:
        holder.kill()
        holder.wait()
    np.testing.assert_allclose(proba, reference, atol=1e-5)


# -- a cache you can manage ------------------------------------------------------


def test_cache_dir_stays_under_its_size_bound_dropping_least_recently_used(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SKTRANSFER_CACHE_DIR_BYTES", "40K")
    torch.manual_seed(0)
    prefix = [nn.Conv2d(3, 4, 3), nn.ReLU()]
    from sktransfer.backbones.building import build_backbone
    transform = build_backbone("resnet18", weights=None).transform(16)  # 3 KiB entries
    extractor = extractor_mod.Extractor(prefix, transform)
    rng = np.random.RandomState(0)
    keep = rng.randint(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    extractor.run(keep, cache=False, cache_dir=tmp_path)
    for _ in range(10):
        time.sleep(0.01)  # distinct modification times on coarse clocks
        extractor.run(keep, cache=False, cache_dir=tmp_path)  # read: recently used
        extractor.run(rng.randint(0, 256, (4, 20, 20, 3), dtype=np.uint8), cache=False,
                      cache_dir=tmp_path)
        size = sum(p.stat().st_size for p in tmp_path.rglob("*.npy"))
        assert size <= 40 * 1024
    info = DiskStore(tmp_path).info()
    assert info["bytes"] <= 40 * 1024 and info["entries"] < 42
    from sktransfer.inputs.images import as_images
    images = as_images(keep)
    store = DiskStore(tmp_path, max_bytes=1 << 40)
    assert all(store.has(extractor.key, images.content_key(i)) for i in range(2))


def test_cache_command_info_prune_clear(tmp_path, tiny):
    X, y = tiny
    TransferClassifier(**FAST, cache_dir=tmp_path).fit(X, y)
    TransferClassifier(**FAST, unfreeze=1, finetune_epochs=1, cache_dir=tmp_path).fit(X, y)
    (tmp_path / "notes.txt").write_text("not ours")
    info = run_here("cache", "info", str(tmp_path))
    assert info.returncode == 0, info.stderr
    assert "32 entries" in info.stdout
    assert "resnet18 (random), 5 of 5 blocks + pooling, 32 px" in info.stdout
    assert "resnet18 (random), 4 of 5 blocks, 32 px" in info.stdout
    pruned = run_here("cache", "prune", str(tmp_path), "--max-bytes", "10K")
    assert pruned.returncode == 0 and "removed" in pruned.stdout
    assert DiskStore(tmp_path).info()["bytes"] <= 10 * 1024
    assert run_here("cache", "prune", str(tmp_path)).returncode == 2  # --max-bytes is needed
    bad = run_here("cache", "prune", str(tmp_path), "--max-bytes", "lots")
    assert bad.returncode == 1 and "'lots' is not a size" in bad.stderr
    cleared = run_here("cache", "clear", str(tmp_path))
    assert cleared.returncode == 0
    assert not list(tmp_path.rglob("*.npy")) and (tmp_path / "notes.txt").exists()
    assert run_here("cache", "info", str(tmp_path / "nowhere")).returncode == 1
