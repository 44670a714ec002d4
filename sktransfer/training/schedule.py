"""The two-phase schedule, wired into skorch.

Phase 1 trains the head on cached activations (through the still-frozen blocks
once, when phase 2 will unfreeze some); phase 2 unfreezes the last blocks at
``finetune_lr`` (:class:`~sktransfer.training.callbacks.PartialUnfreeze`).  What
builds the skorch net, its optimizer and callbacks lives here too, and the
guard that makes Ctrl-C during a fit raise.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time

import numpy as np
import torch
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.helper import predefined_split
from torchvision.transforms import v2 as T

from ..extraction.extractor import Extractor
from .callbacks import FitProgress, PartialUnfreeze
from .lbfgs_head import fit_linear_head
from .network import Batches, Labelled

# fused: one kernel per step instead of one per tensor operation, the same update;
# on cached features a step is mostly overhead, and this is part of it.
OPTIMIZERS = {
    "adam": (torch.optim.Adam, {"fused": True}),
    "adamw": (torch.optim.AdamW, {"fused": True}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {}),
}


# Phase 2's rate rises linearly over its first steps.  Without it, MobileNetV2 on 45
# digits lost phase 1's fit (test accuracy 0.82 -> 0.56 at finetune_lr=3e-4); 20 steps
# kept 0.78 there and changed Fashion-MNIST 1,000 by +0.3 points (85.4 -> 85.7), where a
# warm-up over half of phase 2 lost 1.5 points.
PHASE2_WARMUP_STEPS = 20


def optimizer_spec(optimizer):
    """``(optimizer class, its keyword arguments)`` for the ``optimizer`` parameter."""
    if isinstance(optimizer, str):
        return OPTIMIZERS[optimizer]
    return optimizer, {}


def make_net(est, module, device, n_unfreeze, generator, net_class, net_params):
    """The skorch net that trains ``module`` as ``est``'s parameters say: optimizer,
    rates, batches, the phase-2 callback (``partial_unfreeze``), cosine schedule,
    progress and early stopping; ``net_class``/``net_params``: the estimator's loss and
    outputs."""
    opt_cls, opt_kwargs = optimizer_spec(est.optimizer)
    if torch.device(device).type not in ("cpu", "cuda"):  # where fused kernels exist
        opt_kwargs = {k: v for k, v in opt_kwargs.items() if k != "fused"}
    # Pretrained BatchNorm statistics must not drift; random ones (weights=None,
    # training from scratch) mean nothing and have to be learned.
    callbacks = [("partial_unfreeze", PartialUnfreeze(
        n=n_unfreeze, at_epoch=None, lr=est.finetune_lr,
        freeze_batchnorm=est.weights is not None, warmup=PHASE2_WARMUP_STEPS,
    ))]
    if est.lr_schedule == "cosine":
        # last_epoch=-1: each phase (each fit / partial_fit) starts its own cosine
        callbacks.append(("lr_schedule", LRScheduler(
            policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=est.epochs,
            last_epoch=-1)))
    # Phase 2's discriminative rates: PartialUnfreeze scales finetune_lr per group.
    groups = [(f"blocks.{i}.*", {"lr_scale": est.finetune_lr_decay ** (n_unfreeze - 1 - i)})
              for i in range(n_unfreeze) if est.finetune_lr_decay != 1]
    if est.verbose:
        first = 0 if solved_exactly(est, module) else est.epochs
        total = first + (est.finetune_epochs if n_unfreeze else 0)
        callbacks.append(("progress", FitProgress(total, first=first)))
    callbacks += list(est.callbacks or [])
    if est.early_stopping:
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss", patience=est.n_iter_no_change, load_best=True,
            sink=print if est.verbose else _silent,
        )))
    return net_class(
        module,
        **net_params,
        optimizer=opt_cls,
        lr=est.lr,
        max_epochs=est.epochs,
        batch_size=est.batch_size,
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
        verbose=int(est.verbose >= 2),
        # without it, skorch's epoch table would still be formatted every epoch
        **({} if est.verbose >= 2 else {"callbacks__print_log": None}),
        **({"optimizer__param_groups": groups} if groups else {}),
        **{f"optimizer__{k}": v for k, v in opt_kwargs.items()},
    )


def solved_exactly(est, module):
    """Whether phase 1 is :func:`~sktransfer.training.lbfgs_head.fit_linear_head`'s exact
    solve (``head_solver``; "auto": a linear head on cached features)."""
    if est.head_solver == "optimizer":
        return False
    linear = sum(isinstance(m, torch.nn.Linear) for m in module.head.modules()) == 1
    return linear and not est.augment


def train_phases(est, train_data, valid_data, n_unfreeze, seed=0):
    """The two-phase schedule of ``est`` (built, not yet trained), all of it.

    Phase 1: every backbone block is frozen and the head trains.  Frozen
    blocks give the same output at every epoch, so unless ``augment`` needs
    fresh images, the head trains on pooled features computed once: solved
    exactly for a linear head (:func:`solved_exactly`), else ``epochs`` at
    ``lr``.  Phase 2 (``finetune_epochs``): the ``partial_unfreeze``
    callback unfreezes the last ``n_unfreeze`` blocks at ``finetune_lr`` --
    right after phase 1 ends, also when early stopping ended it sooner --
    and training continues from the cut activations, starting from phase
    1's head (linear probing, then fine-tuning).  Each phase early-stops on
    its own.
    """
    net, module = est.net_, est.net_.module
    try:
        if solved_exactly(est, module):
            def pooled(data):  # through the still-frozen blocks and pooling, once
                return data if not n_unfreeze else Extractor(
                    [*module.blocks, module.pool], None, est.device_).run_tensor(data)
            valid = None if valid_data is None else (pooled(valid_data.data), valid_data.y)
            _solve_phase1(est, net, pooled(train_data.data), train_data.y, valid, seed)
        elif n_unfreeze and not est.augment:
            # The cut activations through the still-frozen blocks and pooling, once.
            tail = Extractor([*module.blocks, module.pool], None, est.device_)
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
        if n_unfreeze and est.finetune_epochs:
            callbacks = dict(net.callbacks_)
            callbacks["partial_unfreeze"].unfreeze(net)
            if "lr_schedule" in callbacks:  # the next phase's own cosine
                callbacks["lr_schedule"].T_max = est.finetune_epochs
            net.set_params(train_split=_split(valid_data))
            net.partial_fit(train_data, None, epochs=est.finetune_epochs)
    finally:
        shown = dict(net.callbacks_).get("progress") if net.initialized_ else None
        if shown is not None:
            shown.close()


def _solve_phase1(est, net, features, y, valid, seed):
    """Phase 1 as one exact solve, recorded as the one epoch of phase 1 (its losses, the
    penalty), which the user's callbacks see end (``KeepBest``: what Ctrl-C saves)."""
    started = time.perf_counter()
    net.initialize()
    net.module_.eval()
    head = net.module_.head
    # a row and its augmented views (stacked after all rows) share the choice's folds
    groups = np.arange(len(y)) % (len(y) // (1 + est.augment_views))
    info = fit_linear_head(head[-1], features, y, net.criterion_, est.alpha, groups, seed)
    row = {"phase": 1, "train_loss": info["train_loss"], "train_loss_best": True,
           "alpha": info["alpha"], "lbfgs_iterations": info["n_iter"]}
    if info["alpha_scores"]:
        row["alpha_scores"] = info["alpha_scores"]
    if valid is not None:
        device = head[-1].weight.device
        with torch.no_grad():
            out = head(valid[0].to(device=device, dtype=torch.float32))
            row["valid_loss"] = float(net.criterion_(out, torch.as_tensor(valid[1],
                                                                          device=device)))
        row["valid_loss_best"] = True
    net.history.new_epoch()
    net.history.record("epoch", len(net.history))
    for key, value in row.items():
        net.history.record(key, value)
    net.history.record("dur", time.perf_counter() - started)
    if est.verbose:
        folds = info["choice_folds"]
        how = ("given" if not info["alpha_scores"] else f"chosen by {folds}-fold CV"
               if folds > 1 else "chosen on one held-out fold")
        valid_text = f", valid loss {row['valid_loss']:.3f}" if "valid_loss" in row else ""
        print(f"fit, phase 1 (head): solved exactly (L-BFGS), alpha {info['alpha']:g} ({how}), "
              f"train loss {info['train_loss']:.3f}{valid_text}, "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    users = {name for name, _ in est.callbacks or []}
    for name, callback in net.callbacks_:
        if name in users:
            callback.on_epoch_end(net, dataset_train=None, dataset_valid=None)


def augmentation(transform):
    """``augment=True``'s fresh random views of ``transform``'s images, normalised."""
    size = transform.crop_size[0]
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(mean=transform.mean, std=transform.std),
    ])


@contextlib.contextmanager
def interrupt_guard():
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
