"""What every estimator of the package shares about extraction: building its backbone,
running its extractor, its input tags and ``engine_``."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..backbones.building import build_backbone


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

    def _backbone(self, weights, seed=None):
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            backbone = copy.deepcopy(backbone)  # never change the user's object
        # A download shows its progress when asked to (verbose) or on a terminal.
        return build_backbone(backbone, weights, progress=True if self.verbose else None,
                              seed=seed)

    def _extract(self, X, view=None):
        return self.extractor_.with_view(view).run(X, cache=self.cache, cache_dir=self.cache_dir,
                                   batch_size=self.batch_size, n_jobs=self.n_jobs,
                                   verbose=self.verbose)

    def __setstate__(self, state):
        super().__setstate__(state)
        # A model fitted on a GPU unpickles on a CPU-only machine.
        if str(state.get("device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_ = "cpu"
