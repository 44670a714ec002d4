"""What every transfer estimator shares: building, extraction, the two phases, persistence.

:class:`TransferEstimator` carries :class:`~sktransfer.TransferClassifier`
and :class:`~sktransfer.TransferRegressor` as scikit-learn's
``BaseMultilayerPerceptron`` carries ``MLPClassifier`` and ``MLPRegressor``:
it owns the parameters they share, building the network (the frozen prefix
run by an :class:`~sktransfer.extractor.Extractor`, the trainable blocks and
the new head), the activation cache, both training phases, views and TTA,
Grad-CAM, ``fitted_state``/``from_fitted_state``, ``save`` and ONNX export.
An estimator adds only what its targets need: how they are checked and
encoded, the head's outputs and loss, and how outputs become predictions
(the hooks at the end of :class:`TransferEstimator`).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import numbers
import re
import signal
import threading
import time
import warnings

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.helper import predefined_split
from skorch.history import History
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torchvision.transforms import v2 as T

from . import _validation as check
from . import catalog
from .callbacks import FitProgress, PartialUnfreeze
from .cut import cut_backbone, describe
from .data import ImageDataset, ImageDecodeError, as_images, find_unreadable
from .engines import quantized, resolve_engine
from .extractor import Extractor
from .extractor_mixin import ExtractorMixin
from .network import Batches, Labelled, TransferNet, draws_globally, make_head
from .persist import export_onnx, save
from .rng import fit_generator, global_rng
from .views import make_views, stack_views, with_view

# fused: one kernel per step instead of one per tensor operation, the same update;
# on cached features a step is mostly overhead, and this is part of it.
OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"fused": True}),
    "adamw": (torch.optim.AdamW, {"fused": True}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {}),
}

#: The numpydoc entries of the parameters every transfer estimator takes; each
#: estimator's docstring lists them where it says ``%(common_parameters)s``.
COMMON_PARAMETERS_DOC = """    backbone : str or torch.nn.Module, default="mobilenet"
        An alias (``"mobilenet"``, ``"resnet"``, ``"vgg"``, ``"inception"``,
        ``"efficientnet"``), a torchvision model name, ``"efficientnet_lite0"``
        or ``"efficientnet_lite2"``, ``"timm/<name>"`` for a model of timm's
        zoo (the ``timm`` extra), or your own module (see
        :func:`sktransfer.backbones.build_backbone` for the contract).
    weights : "imagenet", None, str or path, default="imagenet"
        ``"imagenet"``: the backbone's ImageNet weights, from this machine
        first, else downloaded (torch.hub, or the Hugging Face cache for
        timm) unless ``SKTRANSFER_OFFLINE=1``; the name of torchvision
        weights (``"IMAGENET1K_V2"``); ``None``: random initialisation; a
        path: a state_dict file.
    hidden_units : int or tuple of int, default=()
        Hidden layers (ReLU) of the new head; ``(128,)`` (or ``128``) is the
        classic Dense(128) head.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How the last feature map becomes a vector.
    dropout : float, default=0.2
        Dropout rate before the output layer, in [0, 1).
    epochs : int, default=30
        Phase 1 epochs (backbone frozen, head trains).  Cheap: with the
        cache, the head trains on features computed once.
    lr : float, default=1.5e-3
        Phase 1 learning rate.
    unfreeze : int or "all", default=0
        Number of the backbone's last blocks trained in phase 2 (the "freeze
        depth"); 0: no phase 2.
    finetune_epochs : int, default=3
        Phase 2 epochs.
    finetune_lr : float, default=1e-5
        Phase 2 learning rate of the head and the last unfrozen block.
    finetune_lr_decay : float, default=1.0
        Discriminative learning rates in phase 2: each unfrozen block
        deeper than the last trains at this fraction of the rate of the
        block after it (1: every block at ``finetune_lr``).
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning rate within each phase: ``"cosine"`` anneals it from the
        phase's rate to zero over the phase's epochs (skorch's
        ``LRScheduler`` with ``CosineAnnealingLR``).
    optimizer : str or torch.optim.Optimizer subclass, default="adam"
        ``"adam"``, ``"adamw"``, ``"sgd"`` (momentum 0.9) or ``"rmsprop"``.
    batch_size : int, default=64
        Images per training step (and per extraction batch).  A step on
        cached features costs about the same at 32 or 64 images (its time
        is the per-operation overhead, not arithmetic), so 64 halves the
        head's training time; with ``lr=1.5e-3`` and ``dropout=0.2`` it
        scores as batches of 32 at 1e-3 with dropout 0.5 did
        (docs/benchmarks.md, the head's training settings).
    image_size : int or None, default=None
        Side of the network input in pixels; None: the backbone's own (224,
        299 for inception).
    crop : bool, default=False
        False: resize the whole image to the input square.  True:
        torchvision's preset (resize, then center-crop), which cuts the
        sides of wide photos.
    augment : bool, default=False
        Random resized crops and horizontal flips during training.  The
        frozen part must then run on every image at every epoch, so the
        activation cache is not used for training: expect fits several times
        slower.
    augment_views : int, default=0
        Also train on ``augment_views`` fixed augmented views of each image
        (a horizontal flip, then mild random-resized crops with small
        brightness and contrast changes; see :mod:`sktransfer.views`).
        Each view goes through the frozen part once and is cached like the
        image itself, so every epoch, fold and grid point reuses it: a fit
        costs ``1 + augment_views`` extractions, then trains on that many
        rows per image.  Not with ``augment=True``.
    tta : int, default=1
        Test-time augmentation: predictions average the outputs of the
        image and its first ``tta - 1`` views (the flip first), each cached
        the same way.  1: the image alone.  (The
        network :meth:`export_onnx` writes sees one image at a time.)
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified by class
        for a classifier of one label per image) and stop
        when the validation loss has not improved for ``n_iter_no_change``
        epochs, keeping the best weights; each phase stops on its own.
    validation_fraction : float, default=0.1
        Share of the images held out for early stopping, in (0, 0.5].
    n_iter_no_change : int, default=3
        Epochs without a better validation loss before a phase stops.
    cache : bool, default=True
        Reuse frozen-backbone activations across epochs, fits and clones.
    cache_dir : str or path, default=None
        Also keep activations on disk there, shared by processes and later runs.
    device : str, default="auto"
        ``"auto"``: CUDA when available, else CPU.
    mixed_precision : bool, default=False
        On CUDA, run the frozen part under ``torch.autocast`` (float16):
        faster extraction on tensor cores.  Ignored on CPU.
    engine : str, default="auto"
        One of ``"auto"``, ``"torch"``, ``"openvino"``, ``"onnxruntime"``,
        ``"onnxruntime-int8"``, ``"openvino-int8"``.
        What runs the frozen part.  ``"auto"`` picks the engine measured
        fastest within the project's memory bounds: OpenVINO on the CPU when
        the ``openvino`` extra is installed, else torch (see
        docs/performance.md); CUDA always runs torch.
        ``"openvino"`` and ``"onnxruntime"`` compute in float32 and agree
        with torch within 1e-4.  ``"onnxruntime-int8"`` and
        ``"openvino-int8"`` (opt-in) quantize the frozen part to int8,
        calibrated on 32 of the images fitted, and run it with ONNX Runtime
        or OpenVINO (the faster; it needs both extras); their features
        differ from float32 ones (accuracy cost measured in
        docs/benchmarks.md).
    n_jobs : int, default=None
        Threads decoding images.
    on_error : {"raise", "skip"}, default="raise"
        Image files ``fit`` cannot read: ``"raise"`` lists every one of them
        in one error; ``"skip"`` fits without them (and their targets)
        and warns.  ``predict`` always raises: its output must align with X.
    callbacks : list of (str, skorch.callbacks.Callback) or None, default=None
        Extra skorch callbacks for the net, run in both phases (e.g.
        ``skorch.callbacks.Checkpoint``).  Not written by :meth:`save`.
    random_state : int, RandomState or None, default=None
        Seeds head initialisation, shuffling, dropout and the validation split.
    verbose : int, default=0
        1: progress of extraction and of each fit (phase, epoch, losses, time
        left) -- a bar on a terminal, plain lines in a log; 2: skorch's table
        of epochs too.

"""


def with_common_parameters(cls):
    """Class decorator: put :data:`COMMON_PARAMETERS_DOC` into ``cls``'s docstring, each
    ``default=`` as ``cls``'s own signature has it."""
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}

    def own_default(match):
        name, shown = match.group(1), match.group(2)
        try:
            same = ast.literal_eval(shown) == defaults.get(name, ast.literal_eval(shown))
        except (ValueError, SyntaxError):  # not a literal: shown as it is
            same = True
        return match.group(0) if same else f"{match.group(0)[:-len(shown)]}{defaults[name]!r}"

    doc = re.sub(r"(?m)^    (\w+) : [^\n]*?default=([^\n]+)$", own_default,
                 COMMON_PARAMETERS_DOC)
    cls.__doc__ = cls.__doc__.replace("    %(common_parameters)s\n", doc)
    return cls


class TransferEstimator(ExtractorMixin, BaseEstimator):
    """Base of the transfer estimators; not used directly.

    Holds the parameters every estimator shares (listed in
    :data:`COMMON_PARAMETERS_DOC`) and everything a fit does with them.  A
    subclass defines ``__init__`` with its full signature (keyword-only, as
    scikit-learn's estimators do), its own ``_parameter_constraints`` on top
    of :attr:`_parameter_constraints`, and the target hooks at the end of
    this class.
    """

    _parameter_constraints = {
        **check.COMMON_CONSTRAINTS,
        "hidden_units": [Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
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
        if row is not None and isinstance(self.unfreeze, int) and self.unfreeze > row["blocks"]:
            raise ValueError(
                f"unfreeze={self.unfreeze} but backbone {self.backbone!r} has only "
                f"{row['blocks']} blocks; use unfreeze <= {row['blocks']} (or 'all').")

    @property
    def _hidden_units(self):
        units = self.hidden_units
        return (units,) if isinstance(units, numbers.Integral) else tuple(units)

    def _optimizer_spec(self):
        if isinstance(self.optimizer, str):
            return OPTIMIZERS[self.optimizer]
        return self.optimizer, {}

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
            with _interrupt_guard():
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

    def _build(self, device, weights, strict_engine=True, seed=0):
        """Build the network: the extractor (frozen prefix) and the trainable module.

        The one construction path of a fitted estimator, shared by
        :meth:`fit` (``weights`` from the parameters) and
        :meth:`from_fitted_state` (architecture only; the weights follow).
        Needs the fitted targets (:meth:`_n_outputs`).  Sets ``extractor_``,
        ``transform_``, ``n_blocks_``, ``weights_``, ``device_`` and
        ``net_`` (not yet trained); returns the number of blocks phase 2
        trains.  ``seed`` seeds the head's initial weights, its dropout masks
        and the order of batches (each its own generator) and random backbone
        weights.
        """
        bb = self._backbone(weights, seed)
        n_unfreeze = bb.n_blocks if self.unfreeze == "all" else self.unfreeze
        cut = cut_backbone(bb, n_unfreeze, self.pooling, self.image_size, self.crop)
        head = make_head(cut.n_features, self._hidden_units, self.dropout, self._n_outputs(),
                         fit_generator(seed), fit_generator(seed + 1, device))
        # With augment the prefix must see each freshly augmented image: it runs in the net.
        module = TransferNet(cut.frozen if self.augment else [], cut.trainable, cut.pool, head)
        engine = resolve_engine(self.engine, device, strict=strict_engine)
        self.extractor_ = Extractor(
            [] if self.augment else cut.frozen, cut.transform, device, self.mixed_precision,
            describe(bb, 0 if self.augment else bb.n_blocks - n_unfreeze, cut.transform),
            identity=None if self.augment else cut.identity, engine=engine,
            fallback=self.engine == "auto")
        self.transform_ = cut.transform
        self.n_blocks_ = bb.n_blocks
        self.weights_ = bb.weights_tag
        self.device_ = device
        self.net_ = self._make_net(module, device, n_unfreeze, fit_generator(seed + 2))
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
        return {k: v.detach().cpu().contiguous() for k, v in self._parts().state_dict().items()}

    @classmethod
    def from_fitted_state(cls, params, target, state, history=(), weights_loaded="unknown",
                          engine_calibration=None):
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
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown[:5]))}")
        est = cls(**params)
        est._check_params()
        est._set_targets(target)
        device = check.resolve_device(est.device if torch.cuda.is_available() else "cpu")
        # Files written before the frozen modules of the net were renamed.
        state = {("net.frozen." + k[len("net.stem."):] if k.startswith("net.stem.") else k): v
                 for k, v in state.items()}
        # The architecture the parameters describe, first on the meta device (no memory):
        # built for real only once the tensors, whose size the file bounds, fit it.
        with torch.device("meta"):
            est._build(device, weights=None, strict_engine=False)
        _check_fits(est._parts().state_dict(), state, est)
        # the architecture (weights follow); an engine missing here falls back to torch
        est._build(device, weights=None, strict_engine=False)
        est._parts().load_state_dict(state)
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
            bad = find_unreadable(images) if images.kind == "paths" else []
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
            train_data = Labelled(ImageDataset(data, self._augmentation(self.transform_)), y)
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
            self._train(train_data, valid_data, n_unfreeze)
        self.history_ = self.net_.history
        return self

    def _train(self, train_data, valid_data, n_unfreeze):
        """The two-phase schedule, all of it.

        Phase 1 (``epochs`` at ``lr``): every backbone block is frozen and the
        head trains.  Frozen blocks give the same output at every epoch, so
        unless ``augment`` needs fresh images, the head trains on pooled
        features computed once.  Phase 2 (``finetune_epochs``): the
        ``partial_unfreeze`` callback unfreezes the last ``n_unfreeze``
        blocks at ``finetune_lr`` -- right after phase 1 ends, also when
        early stopping ended it sooner -- and training continues from the
        cut activations.  Each phase early-stops on its own.
        """
        net, module = self.net_, self.net_.module
        try:
            if n_unfreeze and not self.augment:
                # The cut activations through the still-frozen blocks and pooling, once.
                tail = Extractor([*module.blocks, module.pool], None, self.device_)
                module.head_only = True
                try:
                    phase1_valid = None if valid_data is None else Labelled(
                        tail.run_tensor(valid_data.data), valid_data.y)
                    net.set_params(train_split=_split(phase1_valid))
                    net.fit(Labelled(tail.run_tensor(train_data.data), train_data.y), None)
                finally:
                    module.head_only = False
            else:
                net.set_params(train_split=_split(valid_data))
                net.fit(train_data, None)
            if n_unfreeze and self.finetune_epochs:
                callbacks = dict(net.callbacks_)
                callbacks["partial_unfreeze"].unfreeze(net)
                if "lr_schedule" in callbacks:  # the next phase's own cosine
                    callbacks["lr_schedule"].T_max = self.finetune_epochs
                net.set_params(train_split=_split(valid_data))
                net.partial_fit(train_data, None, epochs=self.finetune_epochs)
        finally:
            shown = dict(net.callbacks_).get("progress") if net.initialized_ else None
            if shown is not None:
                shown.close()

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

    def _make_net(self, module, device, n_unfreeze, generator):
        opt_cls, opt_kwargs = self._optimizer_spec()
        if torch.device(device).type not in ("cpu", "cuda"):  # where fused kernels exist
            opt_kwargs = {k: v for k, v in opt_kwargs.items() if k != "fused"}
        # Pretrained BatchNorm statistics must not drift; random ones (weights=None,
        # training from scratch) mean nothing and have to be learned.
        callbacks = [("partial_unfreeze", PartialUnfreeze(
            n=n_unfreeze, at_epoch=None, lr=self.finetune_lr,
            freeze_batchnorm=self.weights is not None,
        ))]
        if self.lr_schedule == "cosine":
            # last_epoch=-1: each phase (each fit / partial_fit) starts its own cosine
            callbacks.append(("lr_schedule", LRScheduler(
                policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=self.epochs,
                last_epoch=-1)))
        # Phase 2's discriminative rates: PartialUnfreeze scales finetune_lr per group.
        groups = [(f"blocks.{i}.*", {"lr_scale": self.finetune_lr_decay ** (n_unfreeze - 1 - i)})
                  for i in range(n_unfreeze) if self.finetune_lr_decay != 1]
        if self.verbose:
            total = self.epochs + (self.finetune_epochs if n_unfreeze else 0)
            callbacks.append(("progress", FitProgress(total)))
        callbacks += list(self.callbacks or [])
        if self.early_stopping:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor="valid_loss", patience=self.n_iter_no_change, load_best=True,
                sink=print if self.verbose else _silent,
            )))
        net_class, net_params = self._net_spec()
        return net_class(
            module,
            **net_params,
            optimizer=opt_cls,
            lr=self.lr,
            max_epochs=self.epochs,
            batch_size=self.batch_size,
            iterator_train=Batches,
            iterator_valid=Batches,
            iterator_train__shuffle=True,
            iterator_train__generator=generator,  # the fit's own order of batches
            # pinned host memory lets batches copy to the GPU asynchronously
            iterator_train__pin_memory=device.startswith("cuda"),
            iterator_valid__pin_memory=device.startswith("cuda"),
            train_split=None,
            callbacks=callbacks,
            device=device,
            # verbose=1: one progress display per fit; 2: skorch's table of epochs too
            verbose=int(self.verbose >= 2),
            # without it, skorch's epoch table would still be formatted every epoch
            **({} if self.verbose >= 2 else {"callbacks__print_log": None}),
            **({"optimizer__param_groups": groups} if groups else {}),
            **{f"optimizer__{k}": v for k, v in opt_kwargs.items()},
        )

    @staticmethod
    def _augmentation(transform):
        size = transform.crop_size[0]
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=transform.mean, std=transform.std),
        ])

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
        from .explain import grad_cam

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
        net = self.net_.module_
        prefix = [*self.extractor_.modules, *net.frozen]
        # Without trainable blocks, the prefix ends with the pooling: not a block.
        blocks = [*prefix, *net.blocks] if len(net.blocks) else prefix[:-1]
        tail = [net.pool, net.head] if len(net.blocks) else [prefix[-1], net.head]
        return grad_cam(blocks, tail, self.transform_, images, targets, self.device_,
                        verbose=self.verbose)

    def save(self, path):
        """Save the fitted model to ``path``; read it back with :func:`sktransfer.load`.

        The file is a zip of a JSON config and the weights (loaded with
        ``torch.load(weights_only=True)``): loading it cannot run code,
        unlike a pickle.  Custom backbone modules cannot be saved this way.

        Parameters
        ----------
        path : str or os.PathLike
        """
        save(self, path)

    def export_onnx(self, path):
        """Export the fitted network to an ONNX file for deployment.

        See :func:`sktransfer.persist.export_onnx`: the model eats
        preprocessed ``(n, 3, s, s)`` images and returns what ``predict``
        is computed from (a classifier's probabilities, a regressor's
        predictions in the targets' units).

        Parameters
        ----------
        path : str or os.PathLike
        """
        export_onnx(self, path)

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


def _take(data, indices):
    """Rows of cached activations, or images of an ImageSource."""
    return data[torch.as_tensor(indices)] if torch.is_tensor(data) else data.subset(indices)


@contextlib.contextmanager
def _interrupt_guard():
    """Make Ctrl-C during ``fit`` raise, even where skorch's loop swallows it.

    skorch ends training quietly on KeyboardInterrupt (its early stopping uses
    that too); a fit the user interrupted must not look finished.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    interrupted = []

    def handler(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        raise KeyboardInterrupt("fit was interrupted")


def _split(valid_data):
    return None if valid_data is None else predefined_split(valid_data)


def _silent(*args, **kwargs):
    pass
