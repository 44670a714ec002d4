"""Cached augmented views, test-time augmentation and the fine-tune phase's schedule."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from sktransfer import TransferClassifier
from sktransfer.backbones.building import build_backbone
from sktransfer.extraction.extractor import Extractor
from sktransfer.inputs.views import View, make_views

# the head by epochs: these tests count its batches and phases (test_lbfgs_head: views there)
FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0,
            head_solver="optimizer")


def test_views_are_fixed_by_their_index_and_start_with_the_flip():
    first, more = make_views(3), make_views(5)
    assert first == more[:3]  # a prefix: tta=3 reuses what augment_views=5 computed
    assert first[0] == View(flip=True)
    assert len({v.token for v in more}) == 5
    for view in more[1:]:
        top, left, height, width = view.box
        assert 0 <= top and top + height <= 1 and 0 <= left and left + width <= 1
        assert 0.6 <= height * width <= 1.0


def test_a_view_changes_the_pixels_as_it_says():
    img = torch.arange(2 * 3 * 4 * 6, dtype=torch.uint8).reshape(2, 3, 4, 6)[0]
    torch.testing.assert_close(View(flip=True)(img), img.flip(-1))
    crop = View(box=(0.25, 0.5, 0.5, 0.5))(img)
    torch.testing.assert_close(crop, img[:, 1:3, 3:6])
    assert View(brightness=1.2)(img).dtype == torch.uint8


def test_the_flip_view_of_an_asymmetric_image_gives_other_activations():
    X = np.zeros((1, 32, 32, 3), np.uint8)
    X[0, :, :8] = 255  # a bright band on the left only
    bb = build_backbone("resnet18", weights=None)
    extractor = Extractor(bb.blocks[:2], bb.transform(32))
    plain = extractor.run(X, cache=False)
    flipped = extractor.with_view(make_views(1)[0]).run(X, cache=False)
    assert not torch.allclose(plain, flipped)
    # mirrored input, mirrored (convolutional) activations, up to padding at the borders
    mirrored = extractor.run(X[:, :, ::-1].copy(), cache=False)
    torch.testing.assert_close(flipped, mirrored)


def test_the_cache_key_changes_with_the_view_parameters():
    bb = build_backbone("resnet18", weights=None)
    extractor = Extractor(bb.blocks[:2], bb.transform(32))
    keys = {extractor.key, extractor.with_view(View(flip=True)).key,
            extractor.with_view(View(box=(0, 0, 0.9, 0.9))).key,
            extractor.with_view(View(box=(0, 0, 0.9, 0.8))).key,
            extractor.with_view(View(brightness=1.05)).key}
    assert len(keys) == 5
    assert extractor.with_view(View(flip=True)).key == extractor.with_view(View(flip=True)).key
    assert extractor.with_view(None) is extractor


def test_views_cost_one_extraction_per_view_not_per_epoch_or_fit(tiny, decoded):
    X, y = tiny
    GridSearchCV(TransferClassifier(**FAST, augment_views=2), {"lr": [1e-3, 1e-2],
                                                               "epochs": [1, 4]},
                 cv=2).fit(X, y)
    assert decoded["n"] == 3 * len(X)  # the image and its two views, once each


def test_training_on_views_uses_them_and_is_deterministic(tiny):
    X, y = tiny
    a = TransferClassifier(**FAST, augment_views=3).fit(X, y)
    b = TransferClassifier(**FAST, augment_views=3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    # one epoch is one pass over the images and their views: 4 x 16 rows
    assert sum(b["train_batch_size"] for b in a.history_[-1, "batches"]) == 4 * len(X)
    plain = TransferClassifier(**FAST).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), plain.predict_proba(X))


def test_tta_of_one_is_no_tta_and_more_averages_the_views(tiny):
    X, y = tiny
    clf = TransferClassifier(**FAST).fit(X, y)
    alone = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.set_params(tta=1).predict_proba(X), alone)
    flip = TransferClassifier(**FAST).fit(X, y)  # the same fit, seeded
    flipped = flip.predict_proba(X[:, :, ::-1].copy())
    np.testing.assert_allclose(clf.set_params(tta=2).predict_proba(X), (alone + flipped) / 2,
                               rtol=1e-5, atol=1e-6)


def test_tta_with_fresh_augmentation_views_the_images_too(tiny):
    X, y = tiny
    clf = TransferClassifier(**FAST, augment=True).fit(X, y)
    alone = clf.predict_proba(X)
    flipped = clf.predict_proba(X[:, :, ::-1].copy())
    np.testing.assert_allclose(clf.set_params(tta=2).predict_proba(X), (alone + flipped) / 2,
                               rtol=1e-5, atol=1e-6)


def test_views_and_fresh_augmentation_together_are_refused(tiny):
    X, y = tiny
    with pytest.raises(ValueError, match="augment_views=2 needs the activation cache"):
        TransferClassifier(**FAST, augment=True, augment_views=2).fit(X, y)


def test_views_with_early_stopping_keep_validation_images_out(tiny, decoded):
    X, y = tiny
    clf = TransferClassifier(**FAST, augment_views=1, early_stopping=True,
                             validation_fraction=0.25).fit(X, y)
    assert decoded["n"] == len(X) + 12  # every image, then the flips of the 12 training ones
    assert "valid_loss" in clf.history_[-1]


def test_discriminative_rates_and_cosine_schedule_in_phase_two(tiny):
    X, y = tiny
    clf = TransferClassifier(**FAST, unfreeze=2, finetune_epochs=4, finetune_lr=1e-2,
                             finetune_lr_decay=0.25, lr_schedule="cosine").fit(X, y)
    groups = clf.net_.optimizer_.param_groups
    assert [g.get("lr_scale") for g in groups] == [0.25, 1.0, None]  # deeper block slower
    phases = [row["phase"] for row in clf.history_]
    assert phases == [1, 1, 2, 2, 2, 2]
    lrs = [row["lr"] for row in clf.history_]
    # each phase starts at its own rate and anneals: cosine over that phase's epochs
    assert lrs[0] == pytest.approx(clf.lr) and lrs[1] == pytest.approx(clf.lr / 2)
    np.testing.assert_allclose(lrs[2:], 1e-2 * (1 + np.cos(np.pi * np.arange(4) / 4)) / 2)


def test_unfreeze_at_default_settings_changes_the_unfrozen_blocks(tiny, r18_weights):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "weights": r18_weights}, unfreeze=2).fit(X, y)
    defaults = TransferClassifier()
    assert (clf.finetune_epochs, clf.finetune_lr) == (defaults.finetune_epochs,
                                                      defaults.finetune_lr)
    trained = dict(clf.net_.module_.blocks.named_parameters())
    start = torch.load(r18_weights, weights_only=True)
    changes = []
    for i, prefix in enumerate(["layer3", "layer4"]):
        for name, value in trained.items():
            if name.startswith(f"{i}.") and value.ndim == 4:
                original = start[f"{prefix}.{name[2:]}"]
                changes.append(float((value.detach() - original).norm() / original.norm()))
    # three steps at finetune_lr=1e-5 move every conv of both blocks by ~1e-4 or more of
    # its norm (float noise is ~1e-7): small, as the benchmarks say it should stay
    assert len(changes) >= 4 and min(changes) > 1e-4, changes
