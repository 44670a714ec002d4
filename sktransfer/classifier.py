"""TransferClassifier: a pretrained CNN with a new head, as a scikit-learn classifier."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from torch import nn

from ._docstrings import with_common_parameters
from .base import TransferEstimator
from .inputs.targets import label_indices
from .training.network import silence_outputs
from .utils.text import listed
from .utils.user_warnings import warn_user


def _plain(value):
    """A label as people write it: ``'cat'``, not ``np.str_('cat')``."""
    return value.item() if isinstance(value, np.generic) else value


def _missing(y):
    """Positions of NaN or None labels."""
    if y.size == 0:
        return np.array([], dtype=int)
    if y.dtype.kind == "f":
        return np.flatnonzero(np.isnan(y).reshape(len(y), -1).any(axis=1))
    if y.dtype == object:
        flags = np.array([v is None or (isinstance(v, float) and np.isnan(v))
                          for v in y.reshape(-1)], dtype=bool)
        return np.flatnonzero(flags.reshape(len(y), -1).any(axis=1))
    return np.array([], dtype=int)


def _holds_sequences(y):
    return any(isinstance(v, (list, tuple, set, frozenset)) for v in list(y)[:1000])


def _check_labels(y):
    """Validate labels on their own (before the images are looked at): one label per
    image, or a 0/1 indicator matrix (multi-label)."""
    if y is None:
        raise ValueError(
            "TransferClassifier requires y to be passed, but the target y is None: it is a "
            "supervised classifier.")
    sequences = not hasattr(y, "shape") or (getattr(y, "dtype", None) == object
                                            and len(y.shape) == 1)  # a Series of lists too
    if sequences and _holds_sequences(y):
        rows = [list(v) if isinstance(v, (list, tuple)) else None for v in y]
        flat = {x for row in rows if row is not None for x in row}
        widths = {len(row) if row is not None else -1 for row in rows}
        if len(widths) != 1 or not flat <= {0, 1}:  # tags, not an indicator written as lists
            raise ValueError(
                "y is a list of label lists (multi-label tags); TransferClassifier takes them "
                "as a 0/1 indicator matrix: y = sklearn.preprocessing.MultiLabelBinarizer()"
                ".fit_transform(tags) (keep the binarizer: its classes_ name the columns).")
    y = np.asarray(y)
    missing = _missing(y)
    if len(missing):
        raise ValueError(
            f"y has {len(missing)} missing label(s) (NaN or None), first at position(s) "
            f"[{listed(np.asarray(missing).tolist())}]; drop those images or give them a class."
        )
    if y.ndim == 2 and y.shape[1] == 1:
        # scikit-learn's convention: a column is one label per image, with a warning
        # (a single tag as multi-label would be a one-class problem)
        return _check_labels(column_or_1d(y, warn=True))
    if y.ndim == 2:
        if type_of_target(y) != "multilabel-indicator":
            raise ValueError(
                f"y has shape {y.shape} but is not a 0/1 indicator matrix; a 2-d y means "
                "multi-label tags (MultiLabelBinarizer makes one). For one label per image "
                "pass a 1-d y.")
        return y
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    return y


@with_common_parameters
class TransferClassifier(ClassifierMixin, TransferEstimator):
    """Transfer learning for images: a pretrained CNN, a new head, frozen then fine-tuned.

    The standard recipe as one scikit-learn estimator: take an ImageNet CNN,
    drop its classifier, freeze it, train a new head (phase 1, ``epochs`` at
    ``lr``), then optionally unfreeze the last ``unfreeze`` blocks and train
    them with the head at a lower rate (phase 2, ``finetune_epochs`` at
    ``finetune_lr``).  BatchNorm layers of pretrained weights stay in
    inference mode throughout (with ``weights=None`` the trained blocks' own
    BatchNorm layers learn their statistics, as training from scratch needs).

    With ``cache=True`` (and ``augment=False``) the frozen part runs once per
    image: its activations are cached and both phases train from them, so
    more epochs, cross-validation folds and grid points cost little.

    ``y`` holds one label per image (softmax outputs, cross-entropy), or,
    for multi-label tagging, a 2-d 0/1 indicator matrix of shape
    ``(n_samples, n_labels)`` as scikit-learn's ``MultiLabelBinarizer``
    makes it (sigmoid outputs, binary cross-entropy; ``predict`` returns
    the indicator matrix and ``score`` the subset accuracy).  A label no
    training image has (a rare tag that fell into another fold) cannot be
    learnt: the fit says so once, and the model predicts it absent
    (probability 0, in its weights, so saved and exported models agree).

    Parameters
    ----------
    %(common_parameters)s
    label_smoothing : float, default=0.1
        Label smoothing of the loss, in [0, 1) (multi-label: each 0/1
        target moves ``label_smoothing / 2`` towards the other).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn (one label
        per image only).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of ``predict_proba``'s columns (with
        multi-label ``y``: the column names of a DataFrame ``y``, else the
        column indices ``0 .. n_labels - 1``).
    n_classes_ : int
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix.
    net_ : skorch.NeuralNet
        The fitted net; its module is the trainable part (unfrozen blocks and head).
    history_ : skorch.History
        Per-epoch losses (and validation scores) and the learning rate.
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
    >>> from sktransfer import TransferClassifier
    >>> clf = TransferClassifier(weights=None, image_size=32, epochs=1, random_state=0)
    >>> X = np.random.RandomState(0).randint(0, 255, (8, 40, 40, 3), dtype=np.uint8)
    >>> clf.fit(X, ["cat", "dog"] * 4).predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        *,
        backbone="mobilenet",
        weights="imagenet",
        hidden_units=(),
        pooling="avg",
        dropout=0.2,
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
        label_smoothing=0.1,
        class_weight=None,
    ):
        self._store_params(locals())

    _parameter_constraints = {
        **TransferEstimator._parameter_constraints,
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        return tags

    # -- the targets: labels, or a multi-label indicator ----------------------

    def _check_targets(self, y):
        return _check_labels(y)

    def _check_learnable(self, y):
        if y.ndim == 2:
            if self.class_weight is not None:
                raise ValueError(
                    f"class_weight={self.class_weight!r} weighs classes of one label per "
                    "image; with a multi-label y leave it None.")
            if not y.astype(bool).any():
                raise ValueError("y has no label on any image (all 0): nothing to learn; "
                                 "at least one image needs a label.")
            return
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({_plain(classes[0])!r}); need at least "
                             "two to classify.")

    def _fit_targets(self, y, columns):
        self.multilabel_ = y.ndim == 2
        if self.multilabel_:
            self.classes_ = (np.arange(y.shape[1]) if columns is None
                             else np.asarray(columns, dtype=object))
            self.n_classes_ = y.shape[1]
            return self._encode_targets(y, "y")
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        self.n_classes_ = len(encoder.classes_)
        return encoder.transform(y).astype(np.int64)

    def _encode_targets(self, y, where):
        if (y.ndim == 2) != self.multilabel_:
            kind = "an indicator matrix" if y.ndim == 2 else "one label per image"
            raise ValueError(f"{where} has {kind}, unlike the y this model was fitted on.")
        if self.multilabel_:
            if y.shape[1] != self.n_classes_:
                raise ValueError(f"{where} has {y.shape[1]} label columns; the model has "
                                 f"{self.n_classes_}.")
            soft = self.label_smoothing / 2  # label smoothing of binary targets
            return (y.astype(np.float32) * (1 - 2 * soft) + soft).astype(np.float32)
        return label_indices(y, self.classes_, where)

    def _n_outputs(self):
        return self.n_classes_

    def _net_spec(self):
        if self.multilabel_:
            return NeuralNet, {"criterion": nn.BCEWithLogitsLoss,
                               "predict_nonlinearity": torch.sigmoid}
        return NeuralNetClassifier, {"criterion": nn.CrossEntropyLoss,
                                     "criterion__weight": None,
                                     "criterion__label_smoothing": self.label_smoothing,
                                     "classes": list(range(self.n_classes_))}

    def _loss_params(self, y):
        if self.multilabel_:
            return {}
        if self.class_weight is None:
            weight = None
        elif isinstance(self.class_weight, dict):
            weight = [self.class_weight.get(c, 1.0) for c in self.classes_]
        else:
            weight = compute_class_weight("balanced", classes=np.arange(self.n_classes_), y=y)
        return {"criterion__weight": None if weight is None
                else torch.as_tensor(np.asarray(weight, dtype=float), dtype=torch.float32)}

    def _stratify(self, y):
        return None if self.multilabel_ else y

    def _check_targets_left(self, y):
        if not self.multilabel_ and len(np.unique(y)) < 2:
            raise ValueError("Fewer than two classes are left after skipping unreadable images.")

    def _after_training(self, y):
        if not self.multilabel_:
            return
        # A label no training image has (a rare tag that fell into the held-out part)
        # cannot be learnt: it is predicted absent, everywhere, and said once.
        never = np.flatnonzero(~(y > 0.5).any(axis=0))
        if len(never):
            silence_outputs(self.net_.module.head, torch.as_tensor(never))
            warn_user(
                f"{len(never)} label(s) of {self.n_classes_} are on no training image: "
                f"{listed(self.classes_[never].tolist(), show=repr)}; the model predicts "
                "them absent (probability 0). Add images that have them to learn them.")

    def target_config(self):
        """The classes (their values and dtype) and whether ``y`` was multi-label.

        Returns
        -------
        dict
            ``classes``, ``classes_dtype`` and ``multilabel``, as JSON values.
        """
        return {"classes": [_plain(c) for c in self.classes_.tolist()],
                "classes_dtype": (self.classes_.dtype.str if self.classes_.dtype != object
                                  else "object"),
                "multilabel": bool(self.multilabel_)}

    def _set_targets(self, target):
        self.classes_ = np.asarray(target["classes"], dtype=target["classes_dtype"])
        self.n_classes_ = len(self.classes_)
        self.multilabel_ = bool(target.get("multilabel", False))

    def output_layer(self):
        """Softmax (one label per image) or sigmoid (multi-label) probabilities.

        Returns
        -------
        tuple of (torch.nn.Module, str, dict)
            The module, ``"probabilities"``, and the classes as metadata.
        """
        layer = nn.Sigmoid() if self.multilabel_ else nn.Softmax(dim=1)
        return layer, "probabilities", {"classes": self.target_config()["classes"],
                                        "multilabel": self.multilabel_}

    def _output_index(self, target):
        return int(label_indices([target], self.classes_, "target")[0])

    # -- prediction ---------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; with multi-label ``y``, each column is the
            probability of its label on its own.
        """
        return self._outputs(X)

    def predict(self, X):
        """Predicted class labels (of the same type as ``y`` in ``fit``).

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
            With multi-label ``y``: the 0/1 indicator matrix (probability
            above 0.5).
        """
        proba = self.predict_proba(X)
        if self.multilabel_:
            return (proba > 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]
