"""Phase 1 solved exactly: a linear head fitted on the pooled features by full-batch L-BFGS.

With a linear head, phase 1 is a convex problem -- the estimator's own loss
(cross-entropy, per-output logistic, or the regressor's) plus an L2 penalty
``alpha / 2 * ||W||^2`` -- the linear probe's problem, as scikit-learn's
``LogisticRegression`` solves it.  The features are standardised for the
solve (so one grid of penalties suits every backbone) and the scaling folded
back into the layer, whose shape does not change.  ``alpha="auto"`` picks the
penalty by 3-fold cross-validation on the training rows (a row's augmented
views stay in its fold; from :data:`ONE_SPLIT_IMAGES` images, on one of the
folds only): walking the grid from the strongest penalty, each
fold warm-started from its previous solution and solved loosely
(:data:`CHOICE_TOL`), and stopping at the first penalty whose mean held-out loss
is not lower than the last one's by :data:`MIN_GAIN` (along this path the
held-out loss falls, then rises or levels off; the weakest penalties, which
cost the most iterations, are seldom reached).  The final solve, on all the
rows, starts from the mean of the chosen penalty's fold solutions.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

#: The penalties ``alpha="auto"`` chooses from, strongest first (the warm-start path).
ALPHAS = tuple(10.0 ** np.arange(1, -6, -1))
#: Folds of the choice.
N_FOLDS = 3
#: From this many images the choice holds out one fold once instead of cross-validating:
#: its held-out loss is then measured on thousands of images, and the choice costs a third.
ONE_SPLIT_IMAGES = 15_000
#: L-BFGS iterations at most, per solve.
MAX_ITER = 500
#: Gradient tolerance (largest absolute entry) of the final solve, and of the choice's solves
#: (ten times scikit-learn's ``LogisticRegression`` default: the choice only ranks penalties a
#: decade apart, and chose the same ones in half the iterations on Fashion-MNIST and IFCT-9).
TOL, CHOICE_TOL = 1e-6, 1e-3
#: The relative fall in held-out loss that makes the choice walk on to a weaker penalty:
#: on a plateau (separable data, label smoothing) the stronger penalty is kept, so solver
#: rounding cannot tip the choice.
MIN_GAIN = 1e-3


def _standardise(x):
    mean = x.mean(0)
    scale = x.std(0, correction=0)  # as StandardScaler
    return mean, torch.where(scale > 1e-6, scale, torch.ones_like(scale))


def _solve(z, y, criterion, alpha, n_out, start=None, tol=TOL):
    """``(W, b, loss, iterations)`` minimising ``criterion(z @ W.T + b, y) + alpha/2 |W|^2``."""
    if start is None:
        weight = torch.zeros(n_out, z.shape[1], device=z.device)
        bias = torch.zeros(n_out, device=z.device)
    else:
        weight, bias = (t.clone() for t in start)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=MAX_ITER, history_size=20,
                            tolerance_grad=tol, tolerance_change=1e-10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = criterion(torch.addmm(bias, z, weight.T), y) + alpha / 2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    state = opt.state[weight]
    weight, bias = weight.detach(), bias.detach()
    with torch.no_grad():
        loss = float(criterion(torch.addmm(bias, z, weight.T), y))
    return weight, bias, loss, int(state.get("n_iter", 0))


def _image_folds(y, groups, seed):
    """Each row's fold of the choice, by image (its views go with it): stratified by class
    where every class can be; ``None`` when there are too few images for folds.

    The images are split, not the rows: ``StratifiedGroupKFold`` on the rows
    gives the same kind of folds but searches them one image at a time (at
    16,000 images it took longer than the choice's solves).
    """
    images, first, row_image = np.unique(groups, return_index=True, return_inverse=True)
    if len(images) < 2 * N_FOLDS:
        return None
    labels = y[first]
    splitter = KFold(N_FOLDS, shuffle=True, random_state=seed)
    if y.ndim == 1:  # class indices: each class needs an image in every fold
        counts = np.bincount(labels)
        if counts[counts > 0].min() >= N_FOLDS:
            splitter = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
    image_fold = np.empty(len(images), dtype=np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(images)), labels)):
        image_fold[test] = k
    return image_fold[row_image.ravel()]


def _fold_order(y, groups, seed):
    """An order of the rows in which each fold's held-out rows are one block, and the
    blocks' ``(start, end)``; ``(None, [])`` when there are too few images for folds.

    From :data:`ONE_SPLIT_IMAGES` images, only the first block is held out (its
    training rows are all the others).
    """
    row_fold = _image_folds(y.cpu().numpy(), groups, seed)
    if row_fold is None:
        return None, []
    ends = np.cumsum(np.bincount(row_fold, minlength=N_FOLDS))
    blocks = list(zip(np.r_[0, ends[:-1]].tolist(), ends.tolist()))
    if len(np.unique(groups)) >= ONE_SPLIT_IMAGES:
        blocks = blocks[:1]
    return np.argsort(row_fold, kind="stable"), blocks


def _fold_views(z, y, blocks):
    """Each fold's ``(train z, train y, test z, test y)`` for rows in :func:`_fold_order`.

    Held-out rows and the first and last folds' training rows are views; only
    the middle folds' training rows are copies (at 60,000 images, a copy of
    every fold's rows held three times the features).
    """
    folds = []
    for start, end in blocks:
        if start == 0 or end == len(z):  # the other rows are one block
            train = slice(end, None) if start == 0 else slice(0, start)
            z_train, y_train = z[train], y[train]
        else:
            z_train, y_train = (torch.cat([t[:start], t[end:]]) for t in (z, y))
        folds.append((z_train, y_train, z[start:end], y[start:end]))
    return folds


def choose_alpha(folds, criterion, n_out):
    """The penalty of :data:`ALPHAS` chosen by the mean held-out loss over the folds, and
    each tried penalty's loss.

    The grid is walked from the strongest penalty; the walk stops at the first
    penalty whose loss is not lower than the one before by :data:`MIN_GAIN`,
    and the one before is chosen (the weakest, if the loss fell all the way).

    Parameters
    ----------
    folds : list of tuple of torch.Tensor
        Each fold's ``(train z, train y, test z, test y)``: standardised
        features and encoded targets, as the criterion takes them.
    criterion : torch.nn.Module
    n_out : int
        The head's outputs.

    Returns
    -------
    alpha : float
    scores : dict of float to float
        The mean held-out loss of each penalty tried, strongest first up to
        the first that did not improve on the one before; empty (and ``alpha`` the
        middle of the grid) when there are no folds (too few images).
    start : tuple of torch.Tensor or None
        The mean over the folds of the chosen penalty's ``(weight, bias)``: where
        the final solve on all the rows starts (``None`` without folds).
    """
    if not folds:
        return ALPHAS[len(ALPHAS) // 2], {}, None
    starts, scores, best, best_starts = [None] * len(folds), {}, ALPHAS[0], None
    for alpha in ALPHAS:
        loss = 0.0
        for k, (z_train, y_train, z_test, y_test) in enumerate(folds):
            weight, bias, _, _ = _solve(z_train, y_train, criterion, alpha, n_out,
                                        starts[k], CHOICE_TOL)
            starts[k] = weight, bias
            with torch.no_grad():
                loss += float(criterion(torch.addmm(bias, z_test, weight.T), y_test))
        scores[alpha] = loss / len(folds)
        if len(scores) > 1 and scores[alpha] > scores[best] * (1 - MIN_GAIN):
            break
        best, best_starts = alpha, list(starts)
    start = tuple(torch.stack(part).mean(0) for part in zip(*best_starts))
    return best, scores, start


def fit_linear_head(layer, features, y, criterion, alpha="auto", groups=None, seed=0):
    """Set ``layer`` (an ``nn.Linear``) to the exact minimiser of the penalised loss.

    Parameters
    ----------
    layer : torch.nn.Linear
        The head's output layer; its weights are replaced.
    features : torch.Tensor
        Pooled features of the training rows, ``(n, d)``.
    y : array-like
        Encoded targets, as ``criterion`` takes them.
    criterion : torch.nn.Module
        The estimator's loss (class weights and label smoothing included).
    alpha : "auto" or float, default="auto"
        The L2 penalty on the weights (of standardised features), or
        chosen by :func:`choose_alpha`.
    groups : array-like of int, optional
        Which rows are views of one image (default: each row its own).
    seed : int, default=0
        The folds of the choice.

    Returns
    -------
    dict
        ``alpha`` (used), ``train_loss`` (without the penalty), ``n_iter``,
        ``alpha_scores`` (the choice's held-out losses, when chosen),
        ``choice_folds`` (the folds the choice held out: 0 when given).
    """
    device = layer.weight.device
    x = features.to(device=device, dtype=torch.float32)
    target = torch.as_tensor(np.asarray(y), device=device)
    mean, scale = _standardise(x)
    groups = np.arange(len(x)) if groups is None else np.asarray(groups)
    order, blocks = _fold_order(target, groups, seed) if alpha == "auto" else (None, [])
    if order is not None:  # the exact solve does not depend on the order of its rows
        order = torch.as_tensor(order, device=device)
        x, target = x[order], target[order]
    elif x is features:  # the caller's, to standardise in place
        x = x.clone()
    z = x.sub_(mean).div_(scale)  # in place: one copy of the features, not two
    scores, start = {}, None
    if alpha == "auto":
        folds = _fold_views(z, target, blocks)
        alpha, scores, start = choose_alpha(folds, criterion, layer.out_features)
        del folds  # the middle folds' copies, before the final solve
    weight, bias, loss, n_iter = _solve(z, target, criterion, float(alpha), layer.out_features,
                                        start)
    with torch.no_grad():  # z @ W.T + b == x @ (W / scale).T + (b - (W / scale) @ mean)
        folded = weight / scale
        layer.weight.copy_(folded.to(layer.weight.dtype))
        layer.bias.copy_((bias - folded @ mean).to(layer.bias.dtype))
    return {"alpha": float(alpha), "train_loss": loss, "n_iter": n_iter,
            "alpha_scores": {f"{a:g}": s for a, s in scores.items()},
            "choice_folds": len(blocks)}
