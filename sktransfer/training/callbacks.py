"""skorch callbacks for the transfer-learning schedule."""

from __future__ import annotations

from skorch.callbacks import Callback
from torch import nn

from ..backbones.cut import check_unfreeze
from ..utils.progress import progress

_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


def _keep_inference_mode(module, args):
    # skorch calls module.train() every step; this runs right before each forward.
    module.training = False


def freeze_batchnorm(modules):
    """Keep every BatchNorm layer inside ``modules`` in inference mode for good.

    Its running statistics then never change, whatever ``train()`` says; its
    affine weights still train when their ``requires_grad`` is set.

    Parameters
    ----------
    modules : iterable of torch.nn.Module
    """
    for block in modules:
        for m in block.modules():
            hooks = m._forward_pre_hooks.values()
            if isinstance(m, _BATCHNORM) and _keep_inference_mode not in hooks:
                m.register_forward_pre_hook(_keep_inference_mode)
                m.eval()


class PartialUnfreeze(Callback):
    """Train only the head first, then also the last ``n`` blocks at a lower rate.

    This callback is the whole two-phase schedule.  When training starts,
    every block is frozen (``requires_grad=False``): phase 1 trains the rest
    of the module (the head).  :meth:`unfreeze` starts phase 2: the last
    ``n`` blocks become trainable and every optimizer parameter group gets
    learning rate ``lr``.  It runs by itself at the start of epoch
    ``at_epoch + 1``, or when called (``TransferClassifier`` calls it after
    phase 1 has ended, early-stopped or not, then continues with
    ``partial_fit``; a ``partial_fit`` never re-freezes the blocks).  A
    parameter group with an ``"lr_scale"`` entry gets ``lr`` times it
    (discriminative learning rates).  Over phase 2's first ``warmup``
    optimizer steps each group's rate rises linearly to its own: an adaptive
    optimizer's first steps move every unfrozen weight by about the rate,
    whatever its gradient, which can undo phase 1's fit on a few dozen
    images.
    BatchNorm layers inside the blocks stay in inference mode throughout, so
    their running statistics never drift (the Keras fine-tuning advice).  The
    learning rate in force (the highest of the groups) and the phase (1 or
    2) are recorded each epoch in ``net.history`` under ``"lr"`` and
    ``"phase"``.

    Usable on its own with any skorch net whose module exposes its blocks.

    Parameters
    ----------
    n : int or "all", default=2
        How many of the last blocks to unfreeze in phase 2.
    at_epoch : int or None, default=5
        Number of phase-1 epochs (head only) before unfreezing by itself;
        ``None``: only when :meth:`unfreeze` is called.
    lr : float, default=1e-5
        Learning rate of phase 2.
    blocks : str or callable, default="blocks"
        Where the blocks are: the name of an attribute of ``net.module_``
        holding an ordered sequence of modules (an ``nn.Sequential`` such as
        torchvision's ``features`` works), or a callable ``module -> list``.
    freeze_batchnorm : bool, default=True
        Keep BatchNorm layers of the blocks in inference mode.
    warmup : int, default=0
        Number of phase 2's first optimizer steps over which the rate rises
        linearly (step ``k`` of them: ``(k + 1) / (warmup + 1)`` of it); 0:
        the full rate from the first step.

    Attributes
    ----------
    unfrozen_ : bool
        Whether phase 2 has started.

    Examples
    --------
    >>> from skorch import NeuralNetClassifier
    >>> from torchvision.models import mobilenet_v2
    >>> net = NeuralNetClassifier(  # doctest: +SKIP
    ...     mobilenet_v2, criterion=torch.nn.CrossEntropyLoss, max_epochs=8, lr=1e-3,
    ...     callbacks=[("partial_unfreeze",
    ...                 PartialUnfreeze(n=2, at_epoch=5, lr=1e-5, blocks="features"))])
    """

    def __init__(self, n=2, at_epoch=5, lr=1e-5, blocks="blocks", freeze_batchnorm=True,
                 warmup=0):
        self.n = n
        self.at_epoch = at_epoch
        self.lr = lr
        self.blocks = blocks
        self.freeze_batchnorm = freeze_batchnorm
        self.warmup = warmup

    def initialize(self):
        """Reset to phase 1 (skorch calls this when the net is (re)initialised)."""
        self.unfrozen_ = False
        self.warmup_steps_ = 0
        self.scaled_ = None
        return self

    def _get_blocks(self, module):
        if callable(self.blocks):
            return list(self.blocks(module))
        return list(getattr(module, self.blocks))

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """Freeze every block, unless phase 2 has started (a later ``partial_fit``)."""
        blocks = self._get_blocks(net.module_)
        check_unfreeze(self.n, len(blocks), "the module", name="PartialUnfreeze(n)")
        if self.freeze_batchnorm:
            freeze_batchnorm(blocks)
        if not self.unfrozen_:
            for block in blocks:
                block.requires_grad_(False)

    def unfreeze(self, net):
        """Start phase 2 now: the last ``n`` blocks train, at learning rate ``lr``."""
        blocks = self._get_blocks(net.module_)
        n = len(blocks) if self.n == "all" else self.n
        for block in blocks[len(blocks) - n:] if n else []:
            block.requires_grad_(True)
        for group in net.optimizer_.param_groups:
            # a group's lr_scale: discriminative rates (deeper blocks slower)
            group["lr"] = self.lr * group.get("lr_scale", 1.0)
            group.pop("initial_lr", None)  # so that a scheduler starts from the new rate
        self.unfrozen_ = True
        self.warmup_steps_ = 0  # phase 2's optimizer steps taken so far, up to warmup

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        """During phase 2's warm-up, scale each group's rate down for this step only."""
        if not (training and self.unfrozen_ and self.warmup_steps_ < self.warmup):
            self.scaled_ = None
            return
        self.warmup_steps_ += 1
        factor = self.warmup_steps_ / (self.warmup + 1)
        groups = net.optimizer_.param_groups
        # the rates in force (a scheduler's, per epoch) are restored after the step
        self.scaled_ = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] *= factor

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        """Restore the rates the warm-up scaled for this step."""
        if training and self.scaled_ is not None:
            for group, lr in zip(net.optimizer_.param_groups, self.scaled_):
                group["lr"] = lr
            self.scaled_ = None

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Start phase 2 when its epoch comes; record the learning rate."""
        epoch = len(net.history)  # skorch has already opened this epoch's row
        if not self.unfrozen_ and self.at_epoch is not None and epoch > self.at_epoch:
            self.unfreeze(net)
        net.history.record("lr", max(g["lr"] for g in net.optimizer_.param_groups))
        net.history.record("phase", 2 if self.unfrozen_ else 1)


class FitProgress(Callback):
    """One progress display per phase of a fit: the epoch, the losses, the time left.

    A bar on a terminal, plain periodic lines otherwise (see
    :func:`sktransfer.utils.progress.progress`).  The phase is read from a
    :class:`PartialUnfreeze` callback named ``"partial_unfreeze"``, when the
    net has one.  Each phase gets a display of its own, so that the time
    left is that of the phase, from its own epochs: phase 2's run through
    the unfrozen blocks and are slower than phase 1's on cached features.
    Call :meth:`close` when the whole fit (both phases) is done.

    Parameters
    ----------
    total : int
        Epochs of the whole fit (both phases).
    desc : str, default="fit"
    first : int or None, default=None
        Epochs of phase 1 (None: the net's ``max_epochs``; 0 when phase 1 is
        solved exactly, without epochs).
    """

    def __init__(self, total, desc="fit", first=None):
        self.total = total
        self.desc = desc
        self.first = first

    def initialize(self):
        """Start with no display; it opens at the first epoch."""
        self.bar_ = None
        self.phase_ = None
        return self

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Open the phase's display when a phase starts."""
        unfreeze = dict(net.callbacks_).get("partial_unfreeze")
        if unfreeze is not None and getattr(unfreeze, "unfrozen_", False):
            n = unfreeze.n
            phase = f"phase 2 (head + last {n} block{'' if n == 1 else 's'})"
        else:
            phase = "phase 1 (head)"
        if phase != self.phase_:
            self.close()
            # phase 1 runs the net's max_epochs, phase 2 the rest of the total (either may
            # stop sooner, early)
            first = min(self.total, net.max_epochs if self.first is None else self.first)
            epochs = first if phase.startswith("phase 1") else max(self.total - first, 1)
            self.bar_ = progress(epochs, f"{self.desc}, {phase}", unit="epoch")
            self.phase_ = phase

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Advance, showing the losses of the epoch."""
        row = net.history[-1]
        text = f"train loss {row['train_loss']:.3f}" if "train_loss" in row else ""
        if row.get("valid_loss") is not None:
            text += f", valid loss {row['valid_loss']:.3f}"
        if row.get("valid_acc") is not None:
            text += f", valid acc {row['valid_acc']:.3f}"
        self.bar_.set_postfix_str(text)
        self.bar_.update(1)

    def close(self):
        """Close the display (the fit is over)."""
        if getattr(self, "bar_", None) is not None:
            self.bar_.close()
            self.bar_ = None


class KeepBest(Callback):
    """Keep, in memory, what it takes to rebuild the estimator at its best epoch so far.

    The best epoch has the lowest ``valid_loss``; without validation data,
    it is the last one.  What is kept goes through the estimator's public
    hooks only -- ``fitted_state()``, ``target_config()``, ``weights_`` and
    the extractor's calibration -- so that, after a fit stopped short
    (Ctrl-C), ``type(est).from_fitted_state(est.get_params(),
    **callback.best_["model"])`` rebuilds that epoch's model.  The command
    line saves an interrupted fit this way.

    Parameters
    ----------
    estimator : TransferClassifier or TransferRegressor
        The estimator whose fit this callback runs in (passed in its
        ``callbacks`` parameter).

    Attributes
    ----------
    best_ : dict or None
        ``epoch``, ``phase``, ``valid_loss`` and ``model`` (the keyword
        arguments of ``from_fitted_state`` but ``params``); None before an
        epoch ended.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def initialize(self):
        """Forget any earlier fit's best epoch."""
        self.best_ = None
        return self

    def on_epoch_end(self, net, **kwargs):
        """Keep this epoch if it is the best so far."""
        row = net.history[-1]
        loss = row.get("valid_loss")
        if self.best_ is not None and loss is not None and self.best_["valid_loss"] is not None \
                and loss > self.best_["valid_loss"]:
            return
        est = self.estimator
        self.best_ = {
            "epoch": row["epoch"], "phase": row.get("phase", 1), "valid_loss": loss,
            "model": {"target": est.target_config(), "state": est.fitted_state(),
                      "history": [dict(r) for r in net.history],
                      "weights_loaded": est.weights_,
                      "engine_calibration": est.extractor_.calibration,
                      "preprocessing": est.transform_.settings()},
        }
