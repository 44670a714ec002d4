"""What every transfer estimator shares: building, extraction, the two phases, persistence.

:class:`TransferEstimator` carries :class:`~sktransfer.TransferClassifier`
and :class:`~sktransfer.TransferRegressor` as scikit-learn's
``BaseMultilayerPerceptron`` carries ``MLPClassifier`` and ``MLPRegressor``:
it owns the parameters they share, building the network (the frozen prefix
run by an :class:`~sktransfer.extraction.extractor.Extractor`, the trainable blocks and
the new head), the activation cache, both training phases, views and TTA,
Grad-CAM, ``fitted_state``/``from_fitted_state``, ``save`` and ONNX export.
An estimator adds only what its targets need: how they are checked and
encoded, the head's outputs and loss, and how outputs become predictions
(the hooks at the end of :class:`TransferEstimator`).
"""

from __future__ import annotations

import contextlib
import numbers
import time
import warnings

import numpy as np
import torch
from skorch.history import History
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _validation as check
from .backbones import catalog
from .backbones.cut import check_unfreeze, cut_backbone
from .extraction.engines import quantized, resolve_engine
from .extraction.mixin import ExtractorMixin
from .inputs.images import ImageDataset, ImageDecodeError, as_images, find_unreadable
from .inputs.views import make_views, stack_views, with_view
from .persistence.mixin import SavingMixin
from .training.network import Labelled, TransferNet, draws_globally, make_head
from .training.schedule import (OPTIMIZERS, augmentation, interrupt_guard, make_net,
                                train_phases)
from .utils.rng import fit_generator, global_rng
from .utils.text import listed


class TransferEstimator(SavingMixin, ExtractorMixin, BaseEstimator):
    """Base of the transfer estimators; not used directly.

    Holds the parameters every estimator shares (listed in
    :data:`sktransfer._docstrings.COMMON_PARAMETERS_DOC`) and everything a fit does with them.  A
    subclass defines ``__init__`` with its full signature (keyword-only, as
    scikit-learn's estimators do), its own ``_parameter_constraints`` on top
    of :attr:`_parameter_constraints`, and the target hooks at the end of
    this class.
    """

    _parameter_constraints = {
        **check.COMMON_CONSTRAINTS,
        "hidden_units": [Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "head_solver": [StrOptions({"auto", "lbfgs", "optimizer"})],
        "alpha": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "unfreeze": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"all"})],
        "finetune_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "finetune_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "finetune_lr_decay": [Interval(numbers.Real, 0, 1, closed="right")],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        # a class is checked by check_optimizer, whose message says what is allowed
        "optimizer": [StrOptions(set(OPTIMIZERS)), Hidden(type)],
        "augment": ["boolean"],
        "augment_views": [Interval(numbers.Integral, 0, check.MAX_VIEWS, closed="both")],
        "tta": [Interval(numbers.Integral, 1, check.MAX_VIEWS, closed="both")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "on_error": [StrOptions({"raise", "skip"})],
        "callbacks": [list, None],
        "random_state": ["random_state"],
    }

    def _store_params(self, values):
        """``__init__``'s body: each parameter stored as given (``values``: its ``locals()``)."""
        for name in self._get_param_names():
            setattr(self, name, values[name])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # image input: ExtractorMixin
        tags.target_tags.required = True
        # Same seed, same result (bit for bit, on CPU); no seed: a new initialisation.
        tags.non_deterministic = self.random_state is None
        return tags

    def _check_params(self):
        """Validate the parameters (scikit-learn's constraints, and the checks across
        them); raises ``ValueError`` naming the parameter."""
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise check.suggest(exc, self) from None
        check.check_hidden_units(self)
        check.check_optimizer(self)
        if self.head_solver == "lbfgs" and (self.augment or self._hidden_units):
            raise ValueError(
                "head_solver='lbfgs' solves a linear head on cached features; with "
                f"{'augment=True' if self.augment else f'hidden_units={self.hidden_units!r}'} "
                "the head trains by epochs: use head_solver='auto' or 'optimizer'.")
        if self.augment and self.augment_views:
            raise ValueError(
                f"augment_views={self.augment_views} needs the activation cache, which "
                "augment=True turns off (it draws fresh augmentation at every step): use one "
                "or the other.")

    def _check_setting(self, device):
        """Refuse what cannot work on ``device`` or with the backbone, before any weights are
        read or downloaded: the engine (and its package) on this device, and ``unfreeze``
        against the backbone's blocks as the catalog knows them."""
        resolve_engine(self.engine, device)
        row = catalog.row(self.backbone) if isinstance(self.backbone, str) else None
        if row is not None:
            check_unfreeze(self.unfreeze, row["blocks"], f"backbone {self.backbone!r}")

    @property
    def _hidden_units(self):
        units = self.hidden_units
        return (units,) if isinstance(units, numbers.Integral) else tuple(units)

    # -- fitting ------------------------------------------------------------

    def fit(self, X, y, validation_data=None):
        """Fit the head (phase 1), then the last ``unfreeze`` blocks (phase 2).

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])
            Training images.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets; what they may be is the estimator's own.
        validation_data : tuple (X_val, y_val), optional
            Scored after each epoch (``valid_loss`` in ``history_``); used
            instead of a split when ``early_stopping``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._check_params()
        device = check.resolve_device(self.device)
        self._check_setting(device)
        columns = _column_names(y)
        y = self._check_targets(y)
        if len(y) == 0:
            as_images(X)  # an empty X is the first thing to say
            raise ValueError("y is empty: need a target for each image, and images to fit on.")
        self._check_learnable(y)
        images = as_images(X)
        _check_lengths(images, y)
        valid = None
        if validation_data is not None:
            X_val, y_val = validation_data
            valid_images = as_images(X_val)
            y_val = self._check_targets(y_val)
            _check_lengths(valid_images, y_val)
            valid = (valid_images, y_val)
        # Every draw of the fit comes from generators seeded with this (rng.py).
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max - 2)
        previous = dict(self.__dict__)
        start = time.perf_counter()
        try:
            with interrupt_guard():
                y_enc = self._fit_targets(y, columns)
                if valid is not None:
                    valid = (valid[0], self._encode_targets(valid[1], "validation_data"))
                self._fit(images, y_enc, valid, seed, device)
            self.fit_seconds_ = time.perf_counter() - start
        except BaseException:
            # An error or Ctrl-C leaves the estimator as it was: fitted with its old
            # state, or clearly unfitted -- never half-updated.
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise
        return self

    def _build(self, device, weights, strict_engine=True, seed=0, preprocessing=None):
        """Build the network: the extractor (frozen prefix) and the trainable module.

        The one construction path of a fitted estimator, shared by
        :meth:`fit` (``weights`` from the parameters) and
        :meth:`from_fitted_state` (architecture only; the weights follow).
        Needs the fitted targets (:meth:`_n_outputs`).  Sets ``extractor_``,
        ``transform_``, ``n_blocks_``, ``weights_``, ``device_`` and
        ``net_`` (not yet trained); returns the number of blocks phase 2
        trains.  ``seed`` seeds the head's initial weights, its dropout masks
        and the order of batches (each its own generator) and random backbone
        weights.  ``preprocessing``: the fitted model's own
        (:meth:`~sktransfer.backbones.preprocess.Preprocess.settings`), in place
        of the weights' defaults.
        """
        bb = self._backbone(weights, seed, preprocessing)
        n_unfreeze = bb.n_blocks if self.unfreeze == "all" else self.unfreeze
        cut = cut_backbone(bb, n_unfreeze, self.pooling, self.image_size, self.crop)
        head = make_head(cut.n_features, self._hidden_units, self.dropout, self._n_outputs(),
                         fit_generator(seed), fit_generator(seed + 1, device))
        # With augment the prefix must see each freshly augmented image: it runs in the net.
        module = TransferNet(cut.frozen if self.augment else [], cut.trainable, cut.pool, head)
        self.extractor_ = self._make_extractor(bb, cut, device, strict_engine)
        self.transform_ = cut.transform
        self.n_blocks_ = bb.n_blocks
        self.weights_ = bb.weights_tag
        self.device_ = device
        self.net_ = make_net(self, module, device, n_unfreeze, fit_generator(seed + 2),
                             *self._net_spec())
        return n_unfreeze

    def _parts(self):
        """The network's modules under the names :meth:`fitted_state` gives their tensors."""
        return nn.ModuleDict({"prefix": nn.ModuleList(self.extractor_.modules),
                              "net": self.net_.module})  # skorch trains this very module

    def fitted_state(self):
        """The fitted network's tensors, as :meth:`from_fitted_state` takes them back.

        Returns
        -------
        dict of str to torch.Tensor
            ``"prefix.<i>.<name>"`` for the frozen prefix run by the
            extractor, ``"net.<name>"`` for the trainable module; on the CPU.
        """
        check_is_fitted(self, "net_")
        # copies: a snapshot taken during a fit (KeepBest) must not follow the training
        return {k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in self._parts().state_dict().items()}

    @classmethod
    def from_fitted_state(cls, params, target, state, history=(), weights_loaded="unknown",
                          engine_calibration=None, preprocessing=None):
        """Rebuild a fitted estimator from its parameters and :meth:`fitted_state`.

        The architecture is built from the backbone registry exactly as
        :meth:`fit` builds it, then ``state`` is loaded into it: nothing in
        ``state`` can run code.  This is how :func:`sktransfer.load` reads a
        model file.

        Parameters
        ----------
        params : dict
            Constructor parameters (``get_params()`` of the fitted model).
        target : dict
            What the fitted model learnt of its targets, as its
            ``target_config()`` gives it (the classes of a classifier, the
            scales of a regressor's outputs).
        state : dict of str to torch.Tensor
            As returned by :meth:`fitted_state`.
        history : list of dict, default=()
            The per-epoch records of ``history_``.
        weights_loaded : str, default="unknown"
            ``weights_`` of the fitted model.
        engine_calibration : str or None, default=None
            ``extractor_.calibration`` of a model fitted with an int8
            engine: the tensor ranges it was calibrated to.
        preprocessing : dict or None, default=None
            ``transform_.settings()`` of the fitted model: the sizes,
            interpolation, mean and std its images were preprocessed with.
            ``None`` (a file of an earlier version): derived from the
            weights' current defaults, with a warning, since they may differ
            from the fit's.

        Returns
        -------
        object
            The fitted estimator, on CUDA when available (and asked for),
            else the CPU.

        Raises
        ------
        ValueError
            When ``state`` does not fit the architecture ``params`` describe.
        """
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {listed(unknown, 5, show=repr)}")
        est = cls(**params)
        est._check_params()
        est._set_targets(target)
        device = check.resolve_device(est.device if torch.cuda.is_available() else "cpu")
        if preprocessing is None:
            warnings.warn(
                "This model does not record its preprocessing (an earlier sktransfer wrote "
                "it): it is derived from the weights' current defaults, which may differ "
                "from the fit's (crop=True, other torchvision weights). Save it again to "
                "record it.", UserWarning, stacklevel=3)
        # The architecture the parameters describe, on the meta device (no memory, no
        # random initialisation); an engine missing here falls back to torch.
        with torch.device("meta"):
            est._build(device, weights=None, strict_engine=False, preprocessing=preprocessing)
        parts = est._parts()
        _check_fits(parts.state_dict(), state, est)
        if _all_in_state(parts):
            # the file's tensors, whose size it bounds, are all there is: memory for them,
            # then them (a random initialisation would only be overwritten)
            parts.to_empty(device=device)
        else:  # a tensor the file does not hold is computed by the real build
            est._build(device, weights=None, strict_engine=False, preprocessing=preprocessing)
            parts = est._parts()
        parts.load_state_dict(state)
        est.weights_ = weights_loaded
        if quantized(est.engine_):  # the same int8 network, without the images
            est.extractor_.calibration = engine_calibration
        est.net_.initialize()
        est.net_.history = History(list(history))
        est.history_ = est.net_.history
        return est

    def _fit(self, images, y, valid, seed, device):
        n_unfreeze = self._build(device, self.weights, seed=seed)
        if self.augment:
            # Training decodes lazily: find unreadable files now, not in epoch 3.
            bad = find_unreadable(images) if images.kind in ("paths", "encoded") else []
            if bad:
                images, y = self._drop_unreadable(images, y, ImageDecodeError.listing(bad))
            data = images
        else:
            try:
                data = self._extract(images)
            except ImageDecodeError as exc:
                images, y = self._drop_unreadable(images, y, exc)
                data = self._extract(images)
        if valid is None and self.early_stopping:
            idx_train, idx_valid = train_test_split(
                np.arange(len(y)), test_size=self.validation_fraction,
                stratify=self._stratify(y), random_state=seed,
            )
            valid = (_take(data, idx_valid), y[idx_valid])
            data, y = _take(data, idx_train), y[idx_train]
            images = images.subset(idx_train)
        if self.augment_views:
            # the views of the training images only: a validation image's views stay out
            data = stack_views(data, [self._extract(images, view)
                                      for view in make_views(self.augment_views)])
            y = np.concatenate([y] * (1 + self.augment_views))
        if self.augment:
            train_data = Labelled(ImageDataset(data, augmentation(self.transform_)), y)
        else:
            train_data = Labelled(data, y)
        valid_data = None
        if valid is not None and not torch.is_tensor(valid[0]):
            try:
                inputs = self._inputs(valid[0])
            except ImageDecodeError as exc:  # the same rule as for training images
                kept, y_kept = self._drop_unreadable(valid[0], valid[1], exc, "validation")
                valid = (kept, y_kept)
                inputs = self._inputs(kept)
            valid_data = Labelled(inputs, valid[1])
        elif valid is not None:
            valid_data = Labelled(valid[0], valid[1])
        self.net_.set_params(**self._loss_params(y))
        # torchvision's random augmentations and a backbone's own dropout or stochastic
        # depth draw from torch's global generator: then it is used alone, and restored.
        shared = self.augment or (n_unfreeze and self.finetune_epochs
                                  and draws_globally(self.net_.module.blocks))
        cuda = range(torch.cuda.device_count()) if device.startswith("cuda") else ()
        with global_rng(seed, cuda) if shared else contextlib.nullcontext():
            train_phases(self, train_data, valid_data, n_unfreeze, seed)
        self._after_training(y)
        self.history_ = self.net_.history
        return self

    def _drop_unreadable(self, images, y, error, which="training"):
        """``on_error="skip"``: drop unreadable images and their targets, with a warning."""
        if self.on_error != "skip":
            raise ImageDecodeError(
                f"{error}\nTo fit without them, pass on_error='skip' (command line: "
                "--on-error skip).", error.indices) from None
        bad = set(error.indices)
        keep = [i for i in range(len(images)) if i not in bad]
        warnings.warn(f"on_error='skip': fitting without {len(bad)} {which} image(s). {error}",
                      UserWarning, stacklevel=4)
        if which == "training":
            self._check_targets_left(y[keep])
        return images.subset(keep), y[keep]

    def _inputs(self, X, view=None):
        """What the net eats: cached activations, or preprocessed images with ``augment``."""
        images = as_images(X)
        if self.augment:
            return ImageDataset(images, with_view(self.transform_, view))
        return self._extract(images, view)

    # -- prediction ---------------------------------------------------------

    def _outputs(self, X):
        """The head's outputs after its nonlinearity, averaged over the ``tta`` views."""
        check_is_fitted(self, "net_")
        images = as_images(X)
        total = 0
        for view in [None, *make_views(self.tta - 1)]:
            data = self._inputs(images, view)
            total = total + self.net_.predict_proba(
                Labelled(data, np.zeros(len(data), dtype=np.int64)))
        return total / self.tta

    def explain(self, X, target=None):
        """Grad-CAM heatmaps: where in each image the network looks for an output.

        Uses pytorch-grad-cam (the ``explain`` extra) at the last backbone
        block -- the last feature map of a CNN, the patch tokens of a ViT.
        The whole network runs on these images, whatever the activation
        cache holds (gradients need it).

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])
        target : object, sequence or None, default=None
            The output to explain, for all images or one per image: a
            classifier's class (or label), a regressor's output index;
            ``None``: a classifier's predicted class, a regressor's only
            output.

        Returns
        -------
        list of ndarray
            One ``(h, w)`` float32 array in [0, 1] per image, at the image's
            own size (``heatmap[y, x]`` is about ``image[y, x]``); with
            ``crop=True`` zero outside the center crop the network saw.
        """
        from .inspection.explain import grad_cam

        check_is_fitted(self, "net_")
        images = as_images(X)
        targets = None
        if target is not None:
            wanted = [target] * len(images) if np.ndim(target) == 0 else list(target)
            if len(wanted) != len(images):
                raise ValueError(f"target has {len(wanted)} entries for {len(images)} images; "
                                 "give one, or one per image.")
            targets = [self._output_index(t) for t in wanted]
        else:
            targets = self._default_explained(len(images))
        blocks, tail = self.inference_modules()
        return grad_cam(blocks, tail, self.transform_, images, targets, self.device_,
                        verbose=self.verbose)

    def inference_modules(self):
        """The fitted network, whole, as :meth:`explain` and :meth:`export_onnx` run it.

        Returns
        -------
        blocks : list of torch.nn.Module
            The backbone's blocks in order, frozen and trained ones alike.
        tail : list of torch.nn.Module
            The pooling and the head: ``blocks`` then ``tail``, run in turn on
            preprocessed images, give the head's raw outputs.
        """
        check_is_fitted(self, "net_")
        net = self.net_.module_
        prefix = [*self.extractor_.modules, *net.frozen]
        if len(net.blocks):
            return [*prefix, *net.blocks], [net.pool, net.head]
        # Without trainable blocks the prefix ends with the pooling: not a block.
        return prefix[:-1], [prefix[-1], net.head]

    # -- what an estimator adds: its targets ---------------------------------

    def _check_targets(self, y):
        """``y`` checked on its own (before the images are looked at), as an array."""
        raise NotImplementedError

    def _check_learnable(self, y):
        """Refuse training targets nothing can be learnt from (one class...)."""

    def _fit_targets(self, y, columns):
        """Learn the targets' encoding (set the fitted target attributes); return ``y``
        encoded as the loss takes it.  ``columns``: the names of a 2-d ``y``'s columns
        (a DataFrame's), or None."""
        raise NotImplementedError

    def _encode_targets(self, y, where):
        """``y`` (of ``where``, e.g. validation data) encoded as the fitted targets were."""
        raise NotImplementedError

    def _n_outputs(self):
        """The head's outputs (from the fitted targets)."""
        raise NotImplementedError

    def _net_spec(self):
        """``(skorch net class, its parameters)``: criterion, predict nonlinearity..."""
        raise NotImplementedError

    def _loss_params(self, y):
        """Net parameters that depend on the (encoded) training targets."""
        return {}

    def _stratify(self, y):
        """What the early-stopping split is stratified by (None: not stratified)."""
        return None

    def _check_targets_left(self, y):
        """Refuse the targets left after unreadable images were skipped, if unusable."""

    def _after_training(self, y):
        """Adjust the trained network to the (encoded) targets it was trained on."""

    def target_config(self):
        """What the fitted model learnt of its targets, as JSON values.

        :func:`sktransfer.load` gives it back to :meth:`from_fitted_state`.

        Returns
        -------
        dict
        """
        raise NotImplementedError

    def _set_targets(self, target):
        """Set the fitted target attributes from :meth:`target_config`'s dict."""
        raise NotImplementedError

    def output_layer(self):
        """The module turning the head's raw outputs into what ``export_onnx`` returns.

        Returns
        -------
        tuple of (torch.nn.Module, str, dict)
            The module, the ONNX output's name, and metadata to record.
        """
        raise NotImplementedError

    def _output_index(self, target):
        """The head output that ``explain``'s ``target`` names."""
        raise NotImplementedError

    def _default_explained(self, n):
        """``explain``'s outputs when no target is given (None: the largest)."""
        return None


def _column_names(y):
    """The column names of a 2-d ``y`` that has them (a pandas DataFrame), else None."""
    columns = getattr(y, "columns", None)
    if columns is None or np.ndim(y) != 2:
        return None
    return [str(c) for c in columns]


def _check_lengths(images, y):
    if len(images) != len(y):
        raise ValueError(f"X has {len(images)} images but y has {len(y)} targets; they must "
                         "match.")


def _check_fits(expected, state, est):
    """Refuse ``state`` unless its names and shapes are exactly those of ``expected`` (the
    architecture's tensors, on the meta device): one line naming the first difference."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k].shape]
    if missing or unexpected or wrong:
        first = (f"{wrong[0]} is {tuple(state[wrong[0]].shape)} in the file, "
                 f"{tuple(expected[wrong[0]].shape)} in the architecture" if wrong
                 else f"{missing[0]} is missing from the file" if missing
                 else f"the file has {unexpected[0]}, which the architecture lacks")
        raise ValueError(f"The saved weights do not fit a {type(est).__name__} of "
                         f"{est.backbone!r} with these parameters: {first}.")


def _all_in_state(module):
    """Whether every tensor of ``module`` is in its state dict (none is a non-persistent
    buffer, which a model file does not hold)."""
    names = module.state_dict().keys()
    return (all(name in names for name, _ in module.named_parameters())
            and all(name in names for name, _ in module.named_buffers()))


def _take(data, indices):
    """Rows of cached activations, or images of an ImageSource."""
    return data[torch.as_tensor(indices)] if torch.is_tensor(data) else data.subset(indices)


