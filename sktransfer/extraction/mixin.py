"""What every estimator of the package shares about extraction: building its backbone,
running its extractor, its input tags and ``engine_``."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..backbones.building import build_backbone
from ..backbones.cut import describe
from ..backbones.records import Preset
from .engines import resolve_engine
from .extractor import Extractor


class ExtractorMixin:
    """How the estimators build their backbone and run their extractor.

    Expects the parameters ``backbone``, ``cache``, ``cache_dir``,
    ``batch_size``, ``n_jobs`` and ``verbose``, and, once fitted,
    ``extractor_``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Images: arrays (n, h, w[, c]), or paths (strings) -- not a 2-d numeric table.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        return tags

    @property
    def engine_(self):
        """The engine that runs the frozen part (``"auto"`` decided; ``"torch"`` once an
        engine that could not convert the network fell back to it)."""
        extractor = self.__dict__.get("extractor_")
        if extractor is None:
            raise AttributeError(f"{type(self).__name__} has no attribute 'engine_' (not "
                                 "fitted)")
        return extractor.engine

    def _backbone(self, weights, seed=None, preprocessing=None):
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            backbone = copy.deepcopy(backbone)  # never change the user's object
        # A download shows its progress when asked to (verbose) or on a terminal.
        bb = build_backbone(backbone, weights, progress=True if self.verbose else None,
                            seed=seed)
        if preprocessing is not None:  # a fitted model's own, recorded when it was saved
            bb.record = dataclasses.replace(bb.record, preset=Preset(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in preprocessing.items()}))
        return bb

    def _make_extractor(self, bb, cut, device, strict_engine=True, top=False):
        """The extractor of ``cut``'s frozen part: the one way an estimator makes it."""
        frozen = [] if getattr(self, "augment", False) else cut.frozen
        n_frozen = bb.n_blocks - len(cut.trainable) if frozen else 0
        return Extractor(frozen, cut.transform, device, self.mixed_precision,
                         describe(bb, n_frozen, cut.transform, top),
                         identity=cut.identity if frozen else None,
                         engine=resolve_engine(self.engine, device, strict=strict_engine),
                         fallback=self.engine == "auto")

    def _extract(self, X, view=None):
        return self.extractor_.with_view(view).run(X, cache=self.cache, cache_dir=self.cache_dir,
                                   batch_size=self.batch_size, n_jobs=self.n_jobs,
                                   verbose=self.verbose)

    def __setstate__(self, state):
        super().__setstate__(state)
        # A model fitted on a GPU unpickles on a CPU-only machine.
        if str(state.get("device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_ = "cpu"
