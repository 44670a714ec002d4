"""The numpydoc entries of the parameters every transfer estimator shares, and the class
decorator that puts them, with each estimator's own defaults, into its docstring."""

import ast
import inspect
import re

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
        Dropout rate before the output layer, in [0, 1) (when the head trains
        by epochs).
    head_solver : {"auto", "lbfgs", "optimizer"}, default="auto"
        How phase 1 trains the head.  ``"lbfgs"``: a linear head is fitted
        exactly on the cached features -- the estimator's loss plus an L2
        penalty ``alpha``, by full-batch L-BFGS, as scikit-learn's
        ``LogisticRegression`` fits the linear probe (``epochs``, ``lr``,
        ``optimizer``, ``batch_size`` and ``dropout`` do not act on it).
        ``"optimizer"``: ``epochs`` of ``optimizer`` at ``lr``.  ``"auto"``:
        ``"lbfgs"`` unless the head has hidden layers or ``augment=True``.
    alpha : "auto" or float, default="auto"
        The L2 penalty of ``head_solver="lbfgs"`` (on the weights of
        standardised features, the loss being a mean over images).
        ``"auto"``: chosen among 10, 1, ..., 1e-5 by 3-fold cross-validation
        on the training images (an image's views in its fold; from 15,000
        images, on one of the three folds), with the held-out loss; its
        held-out losses are in ``history_[0]``.
    epochs : int, default=30
        Phase 1 epochs when the head trains by epochs (backbone frozen).
        Cheap: with the cache, the head trains on features computed once.
    lr : float, default=1.5e-3
        Phase 1 learning rate when the head trains by epochs.
    unfreeze : int or "all", default=0
        Number of the backbone's last blocks trained in phase 2 (the "freeze
        depth"); 0: no phase 2.
    finetune_epochs : int, default=10
        Phase 2 epochs.
    finetune_lr : float, default=1e-4
        Phase 2 learning rate of the head and the last unfrozen block.
        Phase 2 starts from phase 1's head (linear probing, then
        fine-tuning), so the rate can be the one at which fine-tuning the
        last blocks pays: ``python benchmarks/bench_finetune.py`` compares
        rates across data sizes.  It is reached after a linear warm-up over
        phase 2's first 20 optimizer steps: Adam's first steps move every
        unfrozen weight by about the full rate, which on a few dozen images
        undid phase 1's fit.
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
        brightness and contrast changes; see :mod:`sktransfer.inputs.views`).
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


#: A numpydoc parameter line, ``name : type[, default=value]``, at any indent.
_PARAMETER = re.compile(r"^( *)(\w+) : ([^\n]*)$", re.M)


def parameter_docs(doc):
    """The entries of a numpydoc ``Parameters`` section.

    Parameters
    ----------
    doc : str
        A docstring, as ``inspect.getdoc`` gives it.

    Returns
    -------
    dict
        ``{name: (type line, description on one line)}``, in the order written.
    """
    section = doc.split("Parameters\n----------\n", 1)[-1].split("\n\nAttributes", 1)[0]
    lines = list(_PARAMETER.finditer(section))
    indent = min((len(m.group(1)) for m in lines), default=0)
    lines = [m for m in lines if len(m.group(1)) == indent]  # not a line of a description
    entries = {}
    for line, following in zip(lines, [*lines[1:], None]):
        body = section[line.end():following.start() if following else len(section)]
        entries[line.group(2)] = (line.group(3),
                                  " ".join(t.strip() for t in body.splitlines() if t.strip()))
    return entries


def with_common_parameters(cls):
    """Class decorator: put :data:`COMMON_PARAMETERS_DOC` into ``cls``'s docstring, each
    ``default=`` as ``cls``'s own signature has it."""
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()}

    def own_default(match):
        name, kind = match.group(2), match.group(3)
        if "default=" not in kind:
            return match.group(0)
        shown = kind.split("default=", 1)[1]
        try:
            same = ast.literal_eval(shown) == defaults.get(name, ast.literal_eval(shown))
        except (ValueError, SyntaxError):  # not a literal: shown as it is
            same = True
        return match.group(0) if same else f"{match.group(0)[:-len(shown)]}{defaults[name]!r}"

    doc = _PARAMETER.sub(own_default, COMMON_PARAMETERS_DOC)
    cls.__doc__ = cls.__doc__.replace("    %(common_parameters)s\n", doc)
    return cls
