"""PretrainedFeatures: a frozen pretrained CNN as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import check_is_fitted

from . import _validation as check
from .backbones.cut import cut_backbone
from .inputs.images import as_images
from .extraction.mixin import ExtractorMixin
from .persistence.mixin import reduce_whole
from .backbones.torchvision_family import supported_names


class PretrainedFeatures(ExtractorMixin, TransformerMixin, BaseEstimator):
    """Embeddings (or ImageNet class probabilities) of a frozen pretrained CNN.

    Turns images into a ``(n_samples, n_features)`` array for any
    scikit-learn estimator -- the "linear probe" of transfer learning:
    ``make_pipeline(PretrainedFeatures(), LogisticRegression())``.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="mobilenet"
        As in :class:`TransferClassifier`.
    weights : "imagenet", None, str or path, default="imagenet"
        As in :class:`TransferClassifier`.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How the last feature map becomes a vector.
    include_top : bool, default=False
        Return the 1000 ImageNet class probabilities of the original
        classifier instead of the pooled features; their names come from
        :meth:`get_feature_names_out`.
    image_size : int or None, default=None
        Network input side; None: the backbone's own.
    crop : bool, default=False
        As in :class:`TransferClassifier`: False resizes the whole image,
        True uses torchvision's resize and center crop.
    batch_size : int, default=32
    cache : bool, default=True
        Reuse activations of images already seen (in this process).
    cache_dir : str or path, default=None
        Also keep them on disk there.
    device : str, default="auto"
    mixed_precision : bool, default=False
        On CUDA, run the network under ``torch.autocast`` (float16).
    engine : str, default="auto"
        As in :class:`TransferClassifier`; an int8 engine
        (``"onnxruntime-int8"``, ``"openvino-int8"``) is calibrated on the
        first images transformed.
    n_jobs : int, default=None
        Threads decoding images.
    verbose : int, default=0
        1: a progress bar.

    Attributes
    ----------
    n_features_out_ : int
    weights_ : str
        Which weights were loaded.
    engine_ : str
        The engine that runs the network (``"auto"`` decided).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> PretrainedFeatures(weights=None, image_size=32).fit_transform(X).shape
    (2, 1280)
    """

    def __init__(self, *, backbone="mobilenet", weights="imagenet", pooling="avg", include_top=False,
                 image_size=None, crop=False, batch_size=32, cache=True, cache_dir=None,
                 device="auto", mixed_precision=False, engine="auto", n_jobs=None, verbose=0):
        self.backbone = backbone
        self.weights = weights
        self.pooling = pooling
        self.include_top = include_top
        self.image_size = image_size
        self.crop = crop
        self.batch_size = batch_size
        self.cache = cache
        self.cache_dir = cache_dir
        self.device = device
        self.mixed_precision = mixed_precision
        self.engine = engine
        self.n_jobs = n_jobs
        self.verbose = verbose

    _parameter_constraints = {
        **check.COMMON_CONSTRAINTS,
        "include_top": ["boolean"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()  # image input: ExtractorMixin
        tags.transformer_tags.preserves_dtype = []  # always float32 features
        tags.non_deterministic = self.weights is None  # a new random network at each fit
        return tags

    def fit(self, X=None, y=None):
        """Load the backbone (nothing is learned from X).

        Parameters
        ----------
        X : images, optional
            Validated when given.
        y : ignored

        Returns
        -------
        self : PretrainedFeatures
        """
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise check.suggest(exc, self) from None
        self.device_ = check.resolve_device(self.device)
        if X is not None:
            as_images(X)
        bb = self._backbone(self.weights)
        cut = cut_backbone(bb, 0, self.pooling, self.image_size, self.crop, self.include_top)
        names = ((bb.categories or _default_categories(bb.name, cut.n_features))
                 if self.include_top else
                 [f"{type(self).__name__.lower()}{i}" for i in range(cut.n_features)])
        self.feature_names_ = np.asarray(names, dtype=object)
        self.extractor_ = self._make_extractor(bb, cut, self.device_, top=self.include_top)
        self.transform_ = cut.transform
        self.n_features_out_ = len(self.feature_names_)
        self.weights_ = bb.weights_tag
        return self

    def __reduce_ex__(self, protocol):
        return reduce_whole(self)  # pickle, joblib, Dask: the objects themselves

    def __getstate__(self):
        # For skops.io: nothing is learned, so a fitted transformer whose pretrained weights
        # are named (ImageNet's, a torchvision weights name) is its parameters, built again
        # from the same, hash-checked weights where it is read -- plain values only.
        # Random weights (None) could not be drawn again, and a weights file's path may not
        # exist there: those stay whole (and skops cannot write them).
        state = super().__getstate__()
        named = (isinstance(self.weights, str) and "/" not in self.weights
                 and "." not in self.weights)
        if "extractor_" not in state or not isinstance(self.backbone, str) or not named:
            return state
        portable = {k: v for k, v in state.items()
                    if k not in ("extractor_", "transform_", "device_")}
        portable["_rebuild"] = {"calibration": self.extractor_.calibration}
        return portable

    def __setstate__(self, state):
        state = dict(state)
        rebuild = state.pop("_rebuild", None)
        super().__setstate__(state)
        if rebuild is not None:
            weights = self.weights_
            self.fit()
            if self.weights_ != weights:
                raise ValueError(f"this PretrainedFeatures was fitted with the weights "
                                 f"{weights!r}; this machine resolves {self.weights!r} to "
                                 f"{self.weights_!r}. Put those weights here (sktransfer "
                                 "weights download) to unpickle it.")
            self.extractor_.calibration = rebuild["calibration"]

    def transform(self, X):
        """Features of each image.

        Parameters
        ----------
        X : list of paths, list of PIL images, or array (n, h, w[, c])

        Returns
        -------
        ndarray of shape (n_samples, n_features_out_), float32
        """
        check_is_fitted(self, "extractor_")
        return self._extract(X).numpy()

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ImageNet classes with ``include_top``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "feature_names_")
        return self.feature_names_.copy()


def _default_categories(name, n_outputs):
    """ImageNet class names of torchvision's ``name``; numbered outputs for other models."""
    from torchvision import models as tv_models

    if name in supported_names():
        return list(tv_models.get_model_weights(name).DEFAULT.meta["categories"])
    return [f"output{i}" for i in range(n_outputs)]
