"""What both estimators do with their frozen prefix: build it, run it, pickle it."""

import copy

import torch
from torch import nn

from .backbones import build_backbone
from .cache import compute_activations, fingerprint


class FrozenPrefixMixin:
    """Shared by TransferClassifier and PretrainedFeatures.

    Expects the parameters ``backbone``, ``weights``, ``cache``,
    ``cache_dir``, ``batch_size``, ``n_jobs``, ``verbose`` and
    ``mixed_precision``, and, once fitted, ``prefix_``, ``transform_`` and
    ``device_``.
    """

    def _build_backbone(self):
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            backbone = copy.deepcopy(backbone)  # never change the user's object
        return build_backbone(backbone, self.weights)

    def _set_prefix_key(self):
        """Fingerprint the (final) prefix once, for the activation cache."""
        self.prefix_key_ = None
        if self.prefix_ and (self.cache or self.cache_dir is not None):
            self.prefix_key_ = fingerprint(self.prefix_, self.transform_)

    def _activations(self, X):
        return compute_activations(
            self.prefix_, X, self.transform_, cache=self.cache, cache_dir=self.cache_dir,
            batch_size=self.batch_size, device=self.device_, n_jobs=self.n_jobs,
            verbose=self.verbose, prefix_key=self.prefix_key_,
            mixed_precision=self.mixed_precision,
        )

    # Frozen modules travel on the CPU: a model fitted on a GPU unpickles anywhere;
    # they go back to the estimator's device at the next extraction. skorch handles
    # its net (``net_``) the same way.
    def __getstate__(self):
        for module in getattr(self, "prefix_", []):
            module.cpu()
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)
        if str(state.get("device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_ = "cpu"
