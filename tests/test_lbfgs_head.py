"""Phase 1 solved exactly: the head is the linear probe's solution (scikit-learn's
LogisticRegression and Ridge on the same standardised features), its penalty chosen by
cross-validation, and phase 2 starts from it."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from torch import nn

from sktransfer import TransferClassifier, TransferRegressor
from sktransfer.training import lbfgs_head
from sktransfer.training.lbfgs_head import (ALPHAS, MIN_GAIN, _fold_order, _fold_views,
                                            fit_linear_head)

from conftest import blobs

FAST = dict(backbone="resnet18", weights=None, image_size=32, random_state=0)


def test_the_head_is_logistic_regressions_solution_on_the_same_features():
    X, y = make_classification(300, 20, n_informative=8, n_classes=3, random_state=0)
    X = X * np.linspace(0.1, 10, 20) + 5  # scales the solve standardises away
    alpha = 0.01
    layer = nn.Linear(20, 3)
    info = fit_linear_head(layer, torch.tensor(X, dtype=torch.float32), y,
                           nn.CrossEntropyLoss(), alpha)
    with torch.no_grad():
        ours = torch.softmax(layer(torch.tensor(X, dtype=torch.float32)), 1).numpy()
    # LogisticRegression: C * sum(loss) + |W|^2 / 2, i.e. mean(loss) + |W|^2 / (2 C n)
    Z = StandardScaler().fit_transform(X)
    probe = LogisticRegression(C=1 / (alpha * len(X)), tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(ours, probe.predict_proba(Z), atol=2e-4)
    assert info["alpha"] == alpha and info["alpha_scores"] == {}


def test_a_regressors_head_is_ridges_solution():
    X, y = make_regression(200, 10, noise=5.0, random_state=0)
    y = (y - y.mean()) / y.std()
    alpha = 0.1
    layer = nn.Linear(10, 1)
    fit_linear_head(layer, torch.tensor(X, dtype=torch.float32), y[:, None].astype(np.float32),
                    nn.MSELoss(), alpha)
    # Ridge: |y - Xw|^2 + a |w|^2, i.e. n * (mean(loss) + a / n |w|^2)
    Z = StandardScaler().fit_transform(X)
    ridge = Ridge(alpha=alpha * len(X) / 2).fit(Z, y)
    with torch.no_grad():
        ours = layer(torch.tensor(X, dtype=torch.float32)).numpy().ravel()
    np.testing.assert_allclose(ours, ridge.predict(Z), atol=1e-4)


def test_the_choice_holds_each_image_out_once_and_copies_only_the_middle_folds_rows():
    """Held-out rows, and the first and last folds' training rows, are views of one
    reordering of the features (at 60,000 images, a copy per fold held three times them)."""
    n = 60
    z = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n)], 1)
    y = torch.as_tensor(np.arange(n) % 3)
    groups = np.arange(n) % 30  # row i and row i + 30: an image and its augmented view
    order, blocks = _fold_order(y, groups, seed=0)
    zp, yp = z[order], y[order]
    folds = _fold_views(zp, yp, blocks)
    ids = zp[:, 0].long().numpy()
    assert sorted(ids) == list(range(n)) and torch.equal(yp, y[ids])
    held_out = np.concatenate([test[:, 0].long().numpy() for _, _, test, _ in folds])
    assert sorted(held_out) == list(range(n))  # every row held out exactly once
    storage = zp.untyped_storage().data_ptr()
    for k, (z_train, y_train, z_test, y_test) in enumerate(folds):
        train, test = z_train[:, 0].long().numpy(), z_test[:, 0].long().numpy()
        assert not set(groups[train]) & set(groups[test])  # views stay with their image
        assert sorted([*train, *test]) == list(range(n))
        assert torch.equal(y_train, y[train]) and torch.equal(y_test, y[test])
        # stratified: 10 images per class, so each fold holds out 3 or 4 of each class
        assert set(np.bincount(y_test.numpy(), minlength=3) // 2) <= {3, 4}, k
        assert z_test.untyped_storage().data_ptr() == storage
        copied = z_train.untyped_storage().data_ptr() != storage
        assert copied == (0 < k < len(folds) - 1), k


def test_from_many_images_the_choice_holds_out_one_fold_of_them(monkeypatch):
    monkeypatch.setattr(lbfgs_head, "ONE_SPLIT_IMAGES", 60)
    n = 90
    z = torch.arange(n, dtype=torch.float32)[:, None]
    y = torch.as_tensor(np.arange(n) % 3)
    order, blocks = _fold_order(y, np.arange(n), seed=0)
    assert sorted(order) == list(range(n))  # every row kept: the final solve uses them all
    ((z_train, _, z_test, _),) = _fold_views(z[order], y[order], blocks)
    assert len(z_test) == n // 3 and len(z_train) == n - n // 3
    assert not set(z_train[:, 0].tolist()) & set(z_test[:, 0].tolist())


def test_auto_chooses_the_penalty_by_cross_validation_and_records_it():
    X, y = blobs(30)
    clf = TransferClassifier(**FAST).fit(X, y)
    first = clf.history_[0]
    assert first["alpha"] in ALPHAS
    scores = first["alpha_scores"]
    # the walk from the strongest penalty: falling, then stopped at the first that did not
    # fall by MIN_GAIN; the choice is the last that did
    assert list(scores) == [f"{a:g}" for a in ALPHAS[:len(scores)]]
    losses = list(scores.values())
    fell = [b < a * (1 - MIN_GAIN) for a, b in zip(losses, losses[1:])]
    assert all(fell[:-1]) and (len(losses) == len(ALPHAS) or not fell[-1])
    assert f"{first['alpha']:g}" == list(scores)[len(losses) - 1 - (not fell[-1])]
    assert len(clf.history_) == 1  # no epochs: one solve
    again = TransferClassifier(**FAST).fit(X, y)  # the folds come from random_state
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    given = TransferClassifier(**FAST, alpha=0.5).fit(X, y).history_[0]
    assert given["alpha"] == 0.5 and "alpha_scores" not in given


def test_the_optimizer_solver_trains_by_epochs_as_before():
    X, y = blobs(12)
    clf = TransferClassifier(**FAST, head_solver="optimizer", epochs=3).fit(X, y)
    assert len(clf.history_) == 3 and "alpha" not in clf.history_[0]
    auto = TransferClassifier(**FAST, hidden_units=8, epochs=2).fit(X, y)  # a hidden layer
    assert len(auto.history_) == 2


def test_phase_2_starts_from_the_exact_head():
    X, y = blobs(24)
    # a strong penalty keeps the solution well determined: the features reach the head
    # through the last block run apart, which moves them by rounding
    probe = TransferClassifier(**FAST, alpha=10.0).fit(X, y)
    # a phase 2 too slow to move a weight: its head is phase 1's solution
    lpft = TransferClassifier(**FAST, alpha=10.0, unfreeze=1, finetune_epochs=1,
                              finetune_lr=1e-30).fit(X, y)
    assert len(lpft.history_) == 2
    heads = [m.net_.module_.head[-1] for m in (lpft, probe)]
    np.testing.assert_allclose(*(h.weight.detach().numpy() for h in heads), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(*(h.bias.detach().numpy() for h in heads), rtol=1e-3, atol=1e-4)


def test_a_regressor_and_multilabel_classifier_solve_their_own_losses():
    X, y = blobs(30)
    reg = TransferRegressor(**FAST, hidden_units=()).fit(  # a linear head
        X, np.c_[10.0 + 3 * y, 1.0 - y])
    assert reg.history_[0]["alpha"] in ALPHAS
    assert np.corrcoef(reg.predict(X)[:, 0], y)[0, 1] > 0.9
    tags = np.c_[y, 1 - y, y]
    multi = TransferClassifier(**FAST).fit(X, tags)
    assert multi.history_[0]["alpha"] in ALPHAS
    assert (multi.predict(X) == tags).mean() > 0.9


def test_views_train_the_exact_head_and_keep_to_their_images_fold():
    X, y = blobs(30)
    clf = TransferClassifier(**FAST, augment_views=2, tta=3).fit(X, y)
    assert clf.history_[0]["alpha"] in ALPHAS and len(clf.history_) == 1
    assert clf.score(X, y) >= 0.9


@pytest.mark.parametrize("params, match", [
    (dict(head_solver="lbfgs", hidden_units=(8,)), r"hidden_units=\(8,\)"),
    (dict(head_solver="lbfgs", augment=True), "augment=True"),
    (dict(alpha=-1.0), "'alpha'"),
    (dict(head_solver="newton"), "'head_solver'"),
])
def test_impossible_solver_settings_are_named_before_any_work(params, match):
    X, y = blobs(8)
    with pytest.raises(ValueError, match=match):
        TransferClassifier(**FAST, **params).fit(X, y)
