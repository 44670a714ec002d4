"""TransferRegressor: a pretrained CNN with a new head, as a scikit-learn regressor."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from skorch import NeuralNetRegressor
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import StrOptions
from torch import nn

from ._docstrings import with_common_parameters
from .base import TransferEstimator
from .utils.text import listed

#: ``loss`` -> the torch criterion, on standardised targets.
LOSSES = {"squared_error": nn.MSELoss, "huber": nn.HuberLoss, "absolute_error": nn.L1Loss}


def _check_values(y):
    """Validate regression targets on their own: numbers, finite, 1 or 2 dimensions."""
    if y is None:
        raise ValueError(
            "TransferRegressor requires y to be passed, but the target y is None: it is a "
            "supervised regressor.")
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"y holds {y.dtype.name if y.dtype != object else 'non-numeric'} values (e.g. "
                f"{np.ravel(y)[:1].tolist()!r}); TransferRegressor predicts numbers. For "
                "categories use TransferClassifier.") from None
    if y.dtype.kind == "b":
        raise ValueError("y is boolean; TransferRegressor predicts numbers. For yes/no "
                         "targets use TransferClassifier.")
    if y.ndim not in (1, 2):
        raise ValueError(f"y has shape {y.shape}; TransferRegressor takes (n_samples,) or "
                         "(n_samples, n_outputs).")
    y = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(y).all(axis=tuple(range(1, y.ndim))))
    if len(bad):
        raise ValueError(
            f"y has {len(bad)} NaN or infinite target(s), first at row(s) "
            f"[{listed(bad.tolist())}]; drop those images or give them a value.")
    return y


@with_common_parameters
class TransferRegressor(RegressorMixin, TransferEstimator):
    """Transfer learning for images that predicts numbers: a pretrained CNN, a new head.

    The recipe of :class:`TransferClassifier` for one or several continuous
    targets per image (a food's energy per 100 g, a price, an age): a
    pretrained backbone, frozen, with a new linear head trained on its
    cached activations (phase 1), then optionally the last ``unfreeze``
    blocks at a lower rate (phase 2).  The targets are standardised inside
    ``fit`` (each output to mean 0 and variance 1), so one learning rate
    serves kilojoules and grams alike; predictions come back in the
    targets' own units.

    Its head has a hidden layer by default (``hidden_units=(256,)``,
    ``dropout=0.5``): on the food photos of docs/benchmarks.md a linear head
    stayed below the Ridge probe on the same features, this one above it.

    Parameters
    ----------
    %(common_parameters)s
    loss : {"squared_error", "huber", "absolute_error"}, default="squared_error"
        The loss on the standardised targets: squared error (mean), Huber
        (quadratic within one standard deviation of the target, linear
        beyond: robust to a few wild values) or absolute error (median).

    Attributes
    ----------
    n_outputs_ : int
        Targets per image.
    target_names_ : ndarray of str or None
        The names of the targets when ``y`` was a DataFrame (its columns).
    target_mean_ : ndarray of shape (n_outputs,)
        The mean of each target in ``fit``.
    target_scale_ : ndarray of shape (n_outputs,)
        The standard deviation of each target in ``fit`` (1 where it is 0).
    net_ : skorch.NeuralNetRegressor
        The fitted net; its module is the trainable part (unfrozen blocks and head).
    history_ : skorch.History
        Per-epoch losses (on standardised targets) and the learning rate.
    n_blocks_ : int
        Blocks of the backbone.
    fit_seconds_ : float
        Wall-clock seconds of the last ``fit`` (absent on a loaded model).
    weights_ : str
        Which weights were loaded, e.g. ``"IMAGENET1K_V1"``.
    engine_ : str
        The engine that runs the frozen part (``"auto"`` decided).

    Examples
    --------
    >>> from sktransfer import TransferRegressor
    >>> reg = TransferRegressor(weights=None, image_size=32, epochs=1, random_state=0)
    >>> X = np.random.RandomState(0).randint(0, 255, (8, 40, 40, 3), dtype=np.uint8)
    >>> reg.fit(X, np.linspace(100.0, 900.0, 8)).predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        *,
        backbone="mobilenet",
        weights="imagenet",
        hidden_units=(256,),
        pooling="avg",
        dropout=0.5,
        head_solver="auto",
        alpha="auto",
        epochs=30,
        lr=1.5e-3,
        unfreeze=0,
        finetune_epochs=10,
        finetune_lr=1e-4,
        finetune_lr_decay=1.0,
        lr_schedule="constant",
        optimizer="adam",
        batch_size=64,
        image_size=None,
        crop=False,
        augment=False,
        augment_views=0,
        tta=1,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=3,
        cache=True,
        cache_dir=None,
        device="auto",
        mixed_precision=False,
        engine="auto",
        n_jobs=None,
        on_error="raise",
        callbacks=None,
        random_state=None,
        verbose=0,
        loss="squared_error",
    ):
        self._store_params(locals())

    _parameter_constraints = {
        **TransferEstimator._parameter_constraints,
        "loss": [StrOptions(set(LOSSES))],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # -- the targets: standardised numbers -----------------------------------

    def _check_targets(self, y):
        return _check_values(y)

    def _fit_targets(self, y, columns):
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self.target_names_ = None if columns is None else np.asarray(columns, dtype=object)
        self._y_ndim = y.ndim
        table = y.reshape(len(y), -1)
        self.target_mean_ = table.mean(axis=0)
        scale = table.std(axis=0)
        self.target_scale_ = np.where(scale > 0, scale, 1.0)
        return self._encode_targets(y, "y")

    def _encode_targets(self, y, where):
        table = y.reshape(len(y), -1)
        if table.shape[1] != self.n_outputs_:
            raise ValueError(f"{where} has {table.shape[1]} target(s) per image; the model "
                             f"has {self.n_outputs_}.")
        return ((table - self.target_mean_) / self.target_scale_).astype(np.float32)

    def _n_outputs(self):
        return self.n_outputs_

    def _net_spec(self):
        return NeuralNetRegressor, {"criterion": LOSSES[self.loss]}

    def target_config(self):
        """The targets' means and scales, and whether ``y`` was 1-d.

        Returns
        -------
        dict
            ``target_mean``, ``target_scale``, ``target_ndim`` and
            ``target_names``, as JSON values.
        """
        return {"target_mean": self.target_mean_.tolist(),
                "target_scale": self.target_scale_.tolist(),
                "target_ndim": int(self._y_ndim),
                "target_names": (None if self.target_names_ is None
                                 else self.target_names_.tolist())}

    def _set_targets(self, target):
        self.target_mean_ = np.asarray(target["target_mean"], dtype=np.float64)
        self.target_scale_ = np.asarray(target["target_scale"], dtype=np.float64)
        self.n_outputs_ = len(self.target_mean_)
        self._y_ndim = int(target["target_ndim"])
        names = target.get("target_names")
        self.target_names_ = None if names is None else np.asarray(names, dtype=object)
        if self.target_scale_.shape != self.target_mean_.shape or self._y_ndim not in (1, 2):
            raise ValueError("target_mean and target_scale must be lists of one length, and "
                             "target_ndim 1 or 2.")

    def output_layer(self):
        """The head's standardised outputs back in the targets' units.

        Returns
        -------
        tuple of (torch.nn.Module, str, dict)
            The module, ``"predictions"``, and the means and scales as metadata.
        """
        return (_Destandardise(self.target_mean_, self.target_scale_), "predictions",
                {"target_mean": self.target_mean_.tolist(),
                 "target_scale": self.target_scale_.tolist()})

    def _output_index(self, target):
        if (not isinstance(target, numbers.Integral) or isinstance(target, bool)
                or not 0 <= target < self.n_outputs_):
            raise ValueError(f"target {target!r} is not an output of this model; give an "
                             f"output index in 0 .. {self.n_outputs_ - 1}.")
        return int(target)

    def _default_explained(self, n):
        if self.n_outputs_ > 1:
            raise ValueError(f"this model has {self.n_outputs_} outputs; choose the one to "
                             "explain with target=<output index>.")
        return [0] * n

    # -- prediction ---------------------------------------------------------

    def predict(self, X):
        """Predicted targets, in their own units.

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-d when ``y`` was 1-d in ``fit``.
        """
        out = self._outputs(X) * self.target_scale_ + self.target_mean_
        return out[:, 0] if self._y_ndim == 1 else out


class _Destandardise(nn.Module):
    """``x * scale + mean``: standardised outputs back in the targets' units."""

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):  # noqa: D102 - torch convention
        return x * self.scale + self.mean
