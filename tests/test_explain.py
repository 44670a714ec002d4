"""Grad-CAM explanations: they point at what decides the class, for every backbone family."""

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("pytorch_grad_cam", reason="explain needs the grad-cam extra")

from sktransfer import TransferClassifier  # noqa: E402

from conftest import blobs, requires_imagenet  # noqa: E402


def squares(n, size=64, side=16, seed=0):
    """Grey noise with a red (class 0) or blue (class 1) square at a random place."""
    rng = np.random.RandomState(seed)
    X = (rng.rand(n, size, size, 3) * 60 + 90).astype(np.uint8)
    y = rng.randint(0, 2, n)
    boxes = []
    for i in range(n):
        top, left = rng.randint(0, size - side, 2)
        X[i, top:top + side, left:left + side] = [220, 30, 30] if y[i] == 0 else [30, 30, 220]
        boxes.append((top, left))
    return X, y, boxes


def small_cnn():
    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())
    torch.manual_seed(0)
    net = nn.Sequential(block(3, 16, 2), block(16, 32, 2), block(32, 32, 1))
    net.input_size = 64
    return net


def _inside(maps, boxes, side):
    hits, inside, outside = 0, [], []
    for m, (top, left) in zip(maps, boxes):
        r, c = np.unravel_index(m.argmax(), m.shape)
        hits += top <= r < top + side and left <= c < left + side
        mask = np.zeros(m.shape, bool)
        mask[top:top + side, left:left + side] = True
        inside.append(m[mask].mean())
        outside.append(m[~mask].mean())
    return hits / len(maps), float(np.mean(inside)), float(np.mean(outside))


def test_the_heatmap_peak_falls_inside_the_square_that_decides_the_class():
    X, y, _ = squares(80)
    clf = TransferClassifier(backbone=small_cnn(), weights=None, image_size=64, unfreeze="all",
                             epochs=5, finetune_epochs=10, finetune_lr=1e-2,
                             head_solver="optimizer", random_state=0).fit(X, y)
    X_test, y_test, boxes = squares(40, seed=1)
    assert clf.score(X_test, y_test) >= 0.9
    maps = clf.explain(X_test)
    assert all(m.shape == (64, 64) and m.dtype == np.float32 for m in maps)
    assert all(0 <= m.min() and m.max() <= 1 for m in maps)
    hit_rate, inside, outside = _inside(maps, boxes, 16)
    assert hit_rate >= 0.8, f"the peak is inside the square for only {hit_rate:.0%}"
    assert inside > 5 * outside


@requires_imagenet
def test_real_imagenet_weights_look_at_the_square_more_than_elsewhere():
    X, y, _ = squares(40, size=224, side=56)
    clf = TransferClassifier(backbone="mobilenet", random_state=0).fit(X, y)
    X_test, _, boxes = squares(12, size=224, side=56, seed=1)
    _, inside, outside = _inside(clf.explain(X_test), boxes, 56)
    assert inside > 2.5 * outside


def test_heatmaps_are_at_each_images_own_size_and_zero_outside_a_crop():
    X, y = blobs(16, size=40)
    clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=2, crop=True,
                             random_state=0).fit(X, y)
    wide = [np.full((30, 90, 3), 128, np.uint8), np.full((70, 50, 3), 128, np.uint8)]
    maps = clf.explain(wide, target=[0, 1])
    assert [m.shape for m in maps] == [(30, 90), (70, 50)]
    assert maps[0][:, :10].max() == 0 and maps[0][:, -10:].max() == 0  # outside the center crop


def test_explain_runs_the_whole_network_on_the_asked_images_only():
    X, y = blobs(16, size=32)
    clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=2,
                             random_state=0).fit(X, y)  # unfreeze=0: every block cached
    seen = []
    first = clf.extractor_.modules[0]
    # Images that really ran (shape inference on the meta device computes nothing).
    handle = first.register_forward_hook(
        lambda m, i, o: seen.append(len(o)) if o.device.type != "meta" else None)
    try:
        maps = clf.explain(X[:3])
    finally:
        handle.remove()
    assert sum(seen) == 3 and len(maps) == 3
    assert all(not p.requires_grad for m in clf.extractor_.modules for p in m.parameters())


def test_target_names_a_class_and_an_unknown_one_is_a_clear_error():
    X, y, _ = squares(16)
    labels = np.where(y == 0, "cat", "dog")
    clf = TransferClassifier(backbone=small_cnn(), weights=None, image_size=64, epochs=2,
                             random_state=0).fit(X, labels)
    as_cat, as_dog = clf.explain(X[:2], target="cat"), clf.explain(X[:2], target="dog")
    assert not np.allclose(as_cat[0], as_dog[0])
    with pytest.raises(ValueError, match="'horse'"):
        clf.explain(X[:2], target="horse")


@pytest.mark.parametrize("backbone", ["timm/vit_tiny_patch16_224", "timm/convnext_atto",
                                      "efficientnet_lite0"])
def test_timm_cnns_and_vits_explain(backbone):
    pytest.importorskip("timm")
    X, y = blobs(12, size=64)
    clf = TransferClassifier(backbone=backbone, weights=None, image_size=64, epochs=2, unfreeze=1,
                             finetune_epochs=1, random_state=0).fit(X, y)
    maps = clf.explain(X[:4])
    assert [m.shape for m in maps] == [(64, 64)] * 4
    assert all(np.isfinite(m).all() for m in maps)
    # Random weights: one image's map may be all zero (Grad-CAM keeps positive evidence
    # only, and a random network may have none for it), never every image's.
    assert sum(m.max() > 0 for m in maps) >= 2
