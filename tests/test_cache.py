"""The activation cache: keys, reuse across clones, bounded memory, disk safety."""

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV
from torch import nn

from sktransfer import TransferClassifier
from sktransfer.backbones.building import build_backbone
from sktransfer.extraction.cache import DiskStore, MemoryStore
from sktransfer.extraction.extractor import Extractor, fingerprint

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


def compute_activations(prefix, X, transform, **kwargs):
    return Extractor(prefix, transform).run(X, **kwargs)


def _prefix():
    torch.manual_seed(0)
    return [nn.Conv2d(3, 4, 3), nn.ReLU()]


TRANSFORM = build_backbone("resnet18", weights=None).transform(16)


def test_grid_search_computes_each_image_once(tiny, decoded):
    X, y = tiny
    GridSearchCV(TransferClassifier(**FAST), {"lr": [1e-3, 3e-3, 1e-2], "epochs": [1, 3]},
                 cv=3).fit(X, y)
    assert decoded["n"] == len(X)  # 18 fits + refit, one pass per distinct image


def test_each_distinct_cut_is_computed_once(tiny, decoded):
    X, y = tiny
    GridSearchCV(TransferClassifier(**FAST, finetune_epochs=1), {"unfreeze": [0, 1]},
                 cv=2).fit(X, y)
    assert decoded["n"] == 2 * len(X)


def test_identical_images_are_computed_once(decoded):
    X = np.zeros((6, 16, 16, 3), np.uint8)
    X[3:] = 200
    out = compute_activations(_prefix(), X, TRANSFORM)
    assert decoded["n"] == 2
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(out[3], out[5])
    assert not torch.equal(out[0], out[3])


def test_key_changes_with_content_weights_structure_and_preprocessing():
    base = fingerprint(_prefix(), TRANSFORM)
    assert fingerprint(_prefix(), TRANSFORM) == base
    other_weights = _prefix()
    with torch.no_grad():
        other_weights[0].weight[0, 0, 0, 0] += 1e-3
    assert fingerprint(other_weights, TRANSFORM) != base
    assert fingerprint([nn.Conv2d(3, 4, 3), nn.ReLU6()], TRANSFORM) != base
    assert fingerprint(_prefix()[:1], TRANSFORM) != base  # another cut
    other_transform = build_backbone("resnet18", weights=None).transform(20)
    assert fingerprint(_prefix(), other_transform) != base


def test_cached_results_equal_fresh_ones(decoded):
    X = np.random.RandomState(0).randint(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    fresh = compute_activations(_prefix(), X, TRANSFORM, cache=False)
    first = compute_activations(_prefix(), X, TRANSFORM)
    again = compute_activations(_prefix(), X, TRANSFORM)
    assert decoded["n"] == 10
    torch.testing.assert_close(first, fresh)
    torch.testing.assert_close(again, fresh)


def test_memory_store_is_bounded_lru():
    store = MemoryStore(max_bytes=3 * 400)
    for i in range(5):
        store.put(i, torch.zeros(100))  # 400 bytes each
        store.get(0)  # keep 0 recently used
    assert len(store) == 3 and store.nbytes <= 1200
    assert store.get(0) is not None and store.get(1) is None and store.get(4) is not None
    store.put("huge", torch.zeros(10_000))
    assert store.get("huge") is None


def test_disk_cache_is_shared_and_damage_is_detected(tmp_path, decoded):
    X = np.random.RandomState(0).randint(0, 256, (4, 20, 20, 3), dtype=np.uint8)
    first = compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=tmp_path)
    files = sorted(tmp_path.rglob("*.npy"))
    assert len(files) == 4 and not list(tmp_path.rglob(".tmp-*"))
    again = compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=tmp_path)
    assert decoded["n"] == 4
    torch.testing.assert_close(again, first)
    blob = bytearray(files[0].read_bytes())
    blob[-1] ^= 0xFF
    files[0].write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match="Damaged cache file"):
        repaired = compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=tmp_path)
    assert decoded["n"] == 5  # only the damaged entry was recomputed
    torch.testing.assert_close(repaired, first)
    files[1].write_bytes(b"")  # truncated to nothing
    with pytest.warns(RuntimeWarning):
        compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=tmp_path)


def _write_same_entries(root, seed):
    X = np.random.RandomState(0).randint(0, 256, (8, 20, 20, 3), dtype=np.uint8)
    for _ in range(3):
        out = compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=root)
        for key in list(root.rglob("*.npy"))[seed::2]:
            key.unlink(missing_ok=True)  # force rewrites racing with the other process
    return out.numpy()


def test_concurrent_writers_leave_valid_entries(tmp_path):
    outs = Parallel(n_jobs=2, backend="loky")(
        delayed(_write_same_entries)(tmp_path, s) for s in range(2))
    np.testing.assert_allclose(outs[0], outs[1])
    X = np.random.RandomState(0).randint(0, 256, (8, 20, 20, 3), dtype=np.uint8)
    store = DiskStore(tmp_path)
    key = fingerprint(_prefix(), TRANSFORM)
    from sktransfer.inputs.images import as_images
    source = as_images(X)
    entries = [store.get(key, source.content_key(i)) for i in range(8)]
    assert sum(e is not None for e in entries) == len(list(tmp_path.rglob("*.npy")))
    for entry, expected in zip(entries, outs[0]):
        if entry is not None:  # never partial: a complete, checksummed entry
            np.testing.assert_allclose(entry.numpy(), expected)
    # A later run finds the survivors and completes the rest.
    final = compute_activations(_prefix(), X, TRANSFORM, cache=False, cache_dir=tmp_path)
    np.testing.assert_allclose(final.numpy(), outs[0])
    assert all(store.get(key, source.content_key(i)) is not None for i in range(8))
    assert not list(tmp_path.rglob(".tmp-*"))


class _Slow(nn.Module):
    """Pools, slowly, and logs when each batch ran and how many images it held."""

    def __init__(self, log):
        super().__init__()
        self.log = str(log)

    def extra_repr(self):  # in the fingerprint: a worker's compiled copy logs here, not elsewhere
        return self.log

    def forward(self, x):
        import os
        import time

        if x.device.type == "meta":  # working out shapes: nothing computed
            return x.mean((2, 3))
        start = time.time()
        time.sleep(0.4)
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {start} {time.time()} {len(x)}\n")
        return x.mean((2, 3))


def _extract_together(root, log, X, barrier):
    """Wait until both processes are here, then run one prefix over ``X`` into ``root``."""
    import os
    import time

    (barrier / str(os.getpid())).touch()
    deadline = time.time() + 60
    while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.01)
    Extractor([_Slow(log)], TRANSFORM).run(X, cache=False, cache_dir=root, batch_size=4)


def _runs(log):
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(int(p), float(a), float(b), int(n)) for p, a, b, n in rows]


@pytest.mark.parametrize("same", [False, True])
def test_processes_sharing_a_cache_dir_wait_only_for_the_same_images(tmp_path, same):
    images = np.random.RandomState(0).randint(0, 256, (16, 20, 20, 3), dtype=np.uint8)
    parts = [images[:8], images[:8]] if same else [images[:8], images[8:]]
    log, barrier = tmp_path / "log", tmp_path / "barrier"
    barrier.mkdir()
    Parallel(n_jobs=2, backend="loky")(
        delayed(_extract_together)(tmp_path / "cache", log, X, barrier) for X in parts)
    runs = _runs(log)
    assert sum(n for *_, n in runs) == (8 if same else 16)  # each image computed once
    assert not list((tmp_path / "cache").rglob("*.lock"))  # every claim released and gone
    if not same:  # other images: the two processes compute at the same time
        assert len({p for p, *_ in runs}) == 2
        a, b = sorted({p for p, *_ in runs})
        first = [r for r in runs if r[0] == a]
        second = [r for r in runs if r[0] == b]
        assert any(s1 < e2 and s2 < e1 for _, s1, e1, _ in first for _, s2, e2, _ in second)
