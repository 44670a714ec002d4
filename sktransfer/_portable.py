"""Pickles that load on any machine, whatever device the estimator was fitted on."""

import torch


class PortablePrefixMixin:
    """Move the frozen ``prefix_`` to the CPU when pickling; fall back to the CPU on load.

    The modules go back to the estimator's device at the next extraction.
    The skorch net (``net_``) handles its own device the same way.
    """

    def __getstate__(self):
        for module in getattr(self, "prefix_", []):
            module.cpu()
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)
        if str(state.get("device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_ = "cpu"
