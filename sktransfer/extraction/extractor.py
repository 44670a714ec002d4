"""The frozen prefix of a backbone, fingerprinted and run once per image.

An :class:`Extractor` owns everything that turns images into the activations
the trainable part eats: the frozen modules, the preprocessing, the device
and precision they run at, the engine that runs them (BatchNorm folded,
:mod:`sktransfer.extraction.folding`), batching with the next batch decoding
(:mod:`sktransfer.extraction.decoding`), and the fingerprint that addresses its
results in the activation stores of :mod:`sktransfer.extraction.cache`.  It is the one
way frozen modules run on inputs: on images (:meth:`Extractor.run`) or on
the activations of an earlier cut (:meth:`Extractor.run_tensor`).  Both
estimators build theirs from :func:`sktransfer.backbones.cut.cut_backbone`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import torch

from ..utils.sizes import parse_bytes
from .allocator import give_back_freed_memory
from .cache import ActivationStore
from ..inputs.images import ImageDecodeError, as_images
from .decoding import decode_batch, to_batch
from .engines import CALIBRATION_IMAGES, compile_prefix, quantized
from .folding import fuse_conv_bn
from ..utils.progress import progress
from ..utils.user_warnings import warn_user
from ..backbones.shapes import feature_shape, largest_activation
from ..inputs.views import with_view as viewed_transform


def fingerprint(modules, transform):
    """Digest of the modules' structure and tensors, and of the preprocessing.

    Parameters
    ----------
    modules : list of torch.nn.Module
        The frozen prefix, in order.
    transform : object
        The preprocessing; its ``repr`` must describe it fully (torchvision's does).

    Returns
    -------
    str
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(transform).encode())
    for module in modules:
        h.update(repr(module).encode())
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(str(tensor.dtype).encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# (fingerprint, device, engine) -> the compiled prefix; read-only and safe to call from
# several threads at once, so clones and threads share them.
_INFERENCE_COPIES = OrderedDict()
_RUNNERS_LOCK = threading.Lock()  # guards _INFERENCE_COPIES, _CONVERTING and _FINGERPRINTS
_CONVERTING = {}  # key -> lock held while one thread converts it (the others wait for it)
_FINGERPRINTS = {}  # Extractor identity -> fingerprint, worked out once per process


def forget_runners():
    """Drop the compiled prefixes and fingerprints this process keeps (:func:`sktransfer.clear_caches`)."""
    with _RUNNERS_LOCK:
        _INFERENCE_COPIES.clear()
        _FINGERPRINTS.clear()


class Extractor:
    """A frozen network prefix and its preprocessing, run once per image.

    Parameters
    ----------
    modules : list of torch.nn.Module
        Run in order, in inference mode (never trained while they run here).
        May be empty: then the output is the preprocessed image.
    transform : torch.nn.Module or None
        Preprocessing, ``(3, h, w)`` image tensor -> ``(3, s, s)`` float
        tensor; its ``repr`` must name every setting (it is fingerprinted).
        ``None`` for an extractor that only runs on tensors
        (:meth:`run_tensor`).
    device : str, default="cpu"
    mixed_precision : bool, default=False
        On CUDA, run under ``torch.autocast`` (float16); results are stored
        as float32 and keyed apart from full-precision ones.
    description : dict or None, default=None
        What this prefix is (backbone, weights, cut), written next to its
        entries on disk for ``sktransfer cache info``.
    identity : hashable or None, default=None
        Names these exact modules and preprocessing (the weights file they
        were loaded from, the cut, the transform), so that the fingerprint
        is computed once per process, not once per fit.  ``None``: compute it.
    engine : {"torch", "openvino", "onnxruntime"}, default="torch"
        What runs the prefix (see :mod:`sktransfer.extraction.engines`); part of the key.
    fallback : bool, default=False
        When the engine cannot convert these modules, warn and run torch
        instead of raising (for ``engine="auto"``).

    Attributes
    ----------
    key : str
        The fingerprint addressing this prefix's activations in the stores.
    """

    def __init__(self, modules, transform, device="cpu", mixed_precision=False,
                 description=None, identity=None, engine="torch", fallback=False):
        self.modules = list(modules)
        self.transform = transform
        self.device = str(device)
        self.mixed_precision = bool(mixed_precision)
        self.description = description
        self.identity = identity
        self.engine = engine
        self.fallback = fallback
        self.view = None
        self.calibration = None  # int8 engines: what calibration found (JSON), once calibrated
        self._key = None
        self._entry_nbytes = None

    def with_view(self, view):
        """This extractor on a :class:`~sktransfer.inputs.views.View` of each image (``None``: itself).

        It shares the modules and the compiled runner; its activations are
        keyed apart by the view's parameters.
        """
        if view is None:
            return self
        if not (quantized(self.engine) and self.calibration is None):
            self._prefix_key  # noqa: B018 - fingerprinted without the view, once, then shared
        viewed = copy.copy(self)
        viewed.transform, viewed.view = viewed_transform(self.transform, view), view
        return viewed

    @property
    def amp(self):
        """Whether extraction runs under float16 autocast."""
        return self.mixed_precision and torch.device(self.device).type == "cuda"

    @property
    def key(self):
        """Fingerprint of the modules, the preprocessing, the precision and the view."""
        return self._prefix_key + ("" if self.view is None else f"-view[{self.view.token}]")

    @property
    def _prefix_key(self):
        """The key without the view: what the compiled runner depends on (computed once)."""
        if self._key is None:
            with _RUNNERS_LOCK:
                self._key = _FINGERPRINTS.get(self.identity) if self.identity is not None else None
        if self._key is None:
            self._key = fingerprint(self.modules, self.transform)
            if self.identity is not None:
                with _RUNNERS_LOCK:
                    _FINGERPRINTS[self.identity] = self._key
        engine = "" if self.engine == "torch" else f"-{self.engine}"
        if quantized(self.engine):  # int8 results depend on the calibration
            if self.calibration is None:
                raise RuntimeError("an int8 extractor is keyed once it is calibrated")
            engine += "-" + hashlib.sha256(self.calibration.encode()).hexdigest()[:16]
        return self._key + ("-amp" if self.amp else "") + engine

    @property
    def entry_nbytes(self):
        """Bytes of one image's activations (float32), or ``None`` if it cannot be inferred."""
        if self._entry_nbytes is None:
            size = self.transform.crop_size[0]
            try:
                shape = feature_shape(self.modules, size) if self.modules else (3, size, size)
            except ValueError:
                return None
            self._entry_nbytes = 4 * math.prod(shape)
        return self._entry_nbytes

    def batch_limit(self, batch_size):
        """``batch_size``, or fewer images when a batch would need more memory than
        ``SKTRANSFER_BATCH_BYTES`` (default ``1G``) on its way through the prefix.

        A batch is estimated at three times its largest layer output (a layer's
        input, its output and a residual), in float32.
        """
        size = self.transform.crop_size[0]
        try:
            largest = largest_activation(self.modules, size, self.identity) if self.modules \
                else 3 * size ** 2
        except ValueError:  # too small for the network: the run says so
            return batch_size
        budget = parse_bytes(os.environ.get("SKTRANSFER_BATCH_BYTES", "1G"))
        return max(1, min(batch_size, budget // (3 * 4 * largest)))

    def _runner(self):
        """The prefix as extraction runs it: BatchNorm folded, compiled by the engine.

        Folding saves about a third of the CPU time of a MobileNetV2;
        channels_last (torch) and the other engines are measured in
        ``benchmarks/bench_speed.py``.  Built once per process and prefix.
        """
        cache_key = (self._prefix_key, self.device, self.engine)
        runner = _cached_runner(cache_key)
        if runner is not None:
            return runner
        with _RUNNERS_LOCK:
            converting = _CONVERTING.setdefault(cache_key, threading.Lock())
        with converting:  # a second thread asking for the same prefix waits for this one
            runner = _cached_runner(cache_key)
            if runner is None:
                runner = self._compile(self.calibration)
                if runner is not None:
                    _remember_runner(cache_key, runner)
            with _RUNNERS_LOCK:
                _CONVERTING.pop(cache_key, None)
        return self._runner() if runner is None else runner  # None: fell back to torch

    def run(self, X, *, cache=True, cache_dir=None, batch_size=32, n_jobs=None, verbose=0):
        """Activations of each image, each distinct image computed once.

        Parameters
        ----------
        X : images accepted by :func:`sktransfer.inputs.images.as_images`
        cache : bool, default=True
            Use (and fill) the process-wide memory store.
        cache_dir : path or None
            Also use (and fill) a disk store there, shared by processes.
        batch_size : int, default=32
        n_jobs : int or None
            Decoding threads.
        verbose : int, default=0
            ``>= 1`` shows a progress bar for the images computed.

        Returns
        -------
        torch.Tensor
            ``(n_images, *activation_shape)``, float32, on the CPU.

        Raises
        ------
        ImageDecodeError
            Listing every image that could not be decoded (``indices`` holds
            their positions in X).
        """
        images = as_images(X)
        n = len(images)
        results = [None] * n
        if quantized(self.engine) and self.calibration is None and n:
            self._calibrate(images, n_jobs)
        store = ActivationStore(
            cache, cache_dir, entry_nbytes=self.entry_nbytes if cache_dir is not None else None,
            description=self.description)
        run = dict(batch_size=batch_size, n_jobs=n_jobs, verbose=verbose)
        if not store.enabled:
            self._compute(images, range(n), results, **run)
            return torch.stack(results) if n else torch.empty(0)
        keys = [images.content_key(i) for i in range(n)]
        first_of = {}  # identical images are computed once
        for i, key in enumerate(keys):
            first_of.setdefault(key, i)

        def missing(indices):
            found = [(i, store.get(self.key, keys[i])) for i in indices]
            for i, hit in found:
                results[i] = hit
            return [i for i, hit in found if hit is None]

        pending = missing(first_of.values())
        if verbose >= 1:
            _say_skipped(n, n - len(first_of), len(first_of) - len(pending))
        claiming = True
        while pending:
            # One process computes an entry; another one wanting it waits, then reads it.
            # Claims are per entry, so processes computing other images never wait.
            busy = []

            def claim(batch):
                mine, release = store.claim(self.key, [keys[i] for i in batch])
                busy.extend(i for i in batch if keys[i] not in mine)
                mine = [i for i in batch if keys[i] in mine]
                # another process may have written them since: only a disk can tell
                return (missing(mine) if store.disk is not None else mine), release

            self._compute(images, pending, results, **run, claim=claim if claiming else None,
                          save=lambda i, row: store.put(self.key, keys[i], row))
            # A process that died leaves its entries missing: they are claimed again here.
            claiming = store.wait(self.key, [keys[i] for i in busy])
            pending = missing(busy)
        for i, key in enumerate(keys):
            if results[i] is None:  # a duplicate of an image computed above
                results[i] = results[first_of[key]]
        return torch.stack(results) if n else torch.empty(0)

    @torch.inference_mode()
    def run_tensor(self, x, batch_size=256):
        """The modules' output on ``x``, a tensor of inputs (the activations of an earlier cut).

        For features that change while a fit runs (blocks that phase 2 will
        train): run as they are, at full precision, neither folded, compiled
        nor stored, in eval mode and without gradients, on the extractor's
        device (the modules are moved there, where the net trains them: phase
        1 runs before skorch moves its module); each module's own mode is
        restored afterwards.

        Returns
        -------
        torch.Tensor
            float32, on the CPU.
        """
        modes = [m.training for m in self.modules]
        try:
            out = []
            for module in self.modules:
                module.to(self.device).eval()
            with torch.no_grad():
                for start in range(0, len(x), batch_size):
                    h = x[start:start + batch_size].to(self.device)
                    for module in self.modules:
                        h = module(h)
                    out.append(h.float().cpu())
            return torch.cat(out) if out else torch.empty(0)
        finally:
            for module, mode in zip(self.modules, modes):
                module.train(mode)

    def _compile(self, calibration):
        """The folded prefix compiled by the engine; ``None`` when it fell back to torch."""
        folded = fuse_conv_bn([m.cpu() for m in self.modules])
        shape = (3, self.transform.crop_size[0], self.transform.crop_size[0])
        try:
            with torch.inference_mode():
                return compile_prefix(folded, shape, self.engine, self.device,
                                      calibration=calibration)
        except Exception as exc:  # noqa: BLE001 - converters raise anything for a module they cannot take
            if not self.fallback:
                raise RuntimeError(
                    f"engine={self.engine!r} could not convert this network "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); use "
                    "engine='torch'.") from exc
            warn_user(f"engine={self.engine!r} could not convert this network "
                      f"({type(exc).__name__}); running it with torch.", RuntimeWarning)
            self.engine = "torch"  # results are keyed, from now on, as torch's
            return None

    def _calibrate(self, images, n_jobs):
        """Calibrate an int8 engine on the first images of X in the order of their digests.

        The same images whatever their order in X; unreadable ones are
        skipped here (``run`` reports them).
        """
        digests = {}
        for i in range(len(images)):
            try:
                digests.setdefault(images.content_key(i), i)
            except ImageDecodeError:
                continue
        chosen = [digests[k] for k in sorted(digests)][:CALIBRATION_IMAGES]
        decoded = [t for t, _ in decode_batch(images, self.transform, chosen, n_jobs)
                   if t is not None]
        if not decoded:
            raise ImageDecodeError("no readable image to calibrate the int8 engine on")
        runner = self._compile(to_batch(decoded, self.transform))  # int8 is never a fallback
        self.calibration = runner.calibration
        _remember_runner((self._prefix_key, self.device, self.engine), runner)

    def _compute(self, images, pending, results, batch_size, n_jobs, verbose, save=None,
                 claim=None):
        """Run ``pending`` images through the prefix into ``results`` (and ``save`` each).

        ``claim(batch)``, when given, narrows each batch to the images this
        process claims, returning them and a function releasing the claim,
        called once the batch is saved.
        """
        errors = []
        shown = progress(len(pending), "Extracting features", unit="img", enabled=verbose >= 1)
        runner = self._runner() if pending else None
        cuda = torch.device(self.device).type == "cuda"
        batch_size = self.batch_limit(batch_size) if pending else batch_size
        plan = iter([pending[s:s + batch_size] for s in range(0, len(pending), batch_size)])
        claim = claim or (lambda batch: (batch, lambda: None))

        def take():
            """The next batch this process computes, and its release; None at the end."""
            for batch in plan:
                mine, release = claim(batch)
                shown.update(len(batch) - len(mine))  # others' work, or found done
                if mine:
                    return mine, release
                release()
            return None

        decode = functools.partial(decode_batch, images, self.transform, n_jobs=n_jobs)
        current = upcoming = None
        try:
            with torch.inference_mode(), \
                    torch.autocast("cuda", torch.float16, enabled=self.amp), \
                    ThreadPoolExecutor(1) as ahead:
                # The next batch decodes while this one runs (Pillow and the engines release
                # the GIL); measured against decoding in turn in bench_speed.py.
                current = take()
                decoding = ahead.submit(decode, current[0]) if current else None
                while current is not None:
                    batch = current[0]
                    decoded = decoding.result()
                    upcoming = take()
                    if upcoming is not None:
                        decoding = ahead.submit(decode, upcoming[0])
                    errors += [(i, err) for i, (_, err) in zip(batch, decoded)
                               if err is not None]
                    if not errors:  # else keep decoding only, to report every bad file at once
                        x = to_batch([t for t, _ in decoded], self.transform)
                        if cuda:
                            x = x.pin_memory()
                        x = runner(x.to(self.device, non_blocking=True))
                        x = x.float().cpu().contiguous()
                        for i, row in zip(batch, x):
                            results[i] = row = row.clone()
                            if save is not None:
                                save(i, row)
                    shown.update(len(batch))
                    current[1]()
                    current, upcoming = upcoming, None
                    # About a millisecond; without it memory grew by up to a resized image
                    # per image, however often it ran less than once a batch (allocator).
                    give_back_freed_memory()
        finally:
            for held in (current, upcoming):
                if held is not None:
                    held[1]()
        shown.close()
        if errors:
            raise ImageDecodeError.listing(errors)

    # Pickles carry CPU copies of the modules, so a model fitted on a GPU
    # unpickles anywhere -- and pickling never moves the live estimator's modules.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["modules"] = [_on_cpu(m) for m in self.modules]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            self.device = "cpu"


def _cached_runner(key):
    with _RUNNERS_LOCK:
        runner = _INFERENCE_COPIES.get(key)
        if runner is not None:
            _INFERENCE_COPIES.move_to_end(key)
        return runner


def _remember_runner(key, runner):
    with _RUNNERS_LOCK:
        _INFERENCE_COPIES[key] = runner
        # A few: a process alternating between prefixes (engines, cuts) must not
        # convert them again at every call.
        while len(_INFERENCE_COPIES) > 4:
            _INFERENCE_COPIES.popitem(last=False)


def _on_cpu(module):
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return module
    return copy.deepcopy(module).cpu()


def _say_skipped(n, repeats, cached):
    """One line, before the progress, on the images of ``n`` that are not computed now."""
    parts = ([f"{repeats} copies of another image's content"] if repeats else []) \
        + ([f"{cached} already in the cache"] if cached else [])
    if parts:
        print(f"Extracting features: {n - repeats - cached} of {n} images to compute "
              f"({'; '.join(parts)})", file=sys.stderr, flush=True)
