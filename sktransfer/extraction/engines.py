"""Inference engines for the frozen prefix: eager torch, OpenVINO, ONNX Runtime, int8.

With the activation cache, a fit costs one forward pass of each distinct
image through the frozen prefix, so on a CPU the engine that runs it sets the
pace.  Every engine here computes in float32 and agrees with torch within
1e-4 (relative; tested); OpenVINO is told to keep float32, since on
processors with bfloat16 units its default precision is not.

The activation cache keys each engine's results apart: an entry always
holds exactly what its engine computes, so a fit gives the same numbers bit
for bit whatever ran before it.

The int8 engines are the opt-in exception: ONNX Runtime's static
post-training quantization (QDQ, int8 weights per channel, uint8
activations), calibrated by min-max on :data:`CALIBRATION_IMAGES` of the
images being fitted, then run by ONNX Runtime (``"onnxruntime-int8"``) or
by OpenVINO (``"openvino-int8"``, which reads the same quantized graph and
runs it faster on processors with VNNI; measured in bench_speed.py).  What calibration
found (the range of every tensor of the graph, as ONNX Runtime's
calibration cache writes it) is part of the cache key and of a saved model,
so the same int8 network is rebuilt without the images.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

#: ``engine`` values; ``"auto"``: the first of :data:`AUTO_ORDER` installed, on CPU.
ENGINES = ("auto", "torch", "openvino", "onnxruntime", "onnxruntime-int8", "openvino-int8")
#: The engines ``"auto"`` prefers to torch, fastest first.  Measured end to end from
#: JPEG files on 2 CPU cores (bench_speed.py, decoding a batch ahead): OpenVINO
#: 1.7-1.8x torch, ONNX Runtime 1.4x.  A default fit on 2,000 paths (batches of 64)
#: peaks 1.1 GB above the model with OpenVINO (its runtime cache off), within the
#: 1.5 GB bound; the suite and the benchmarks run with it as the default.
AUTO_ORDER = ("openvino",)
# The extras each engine needs, each named after the runtime package it installs
# ("openvino-int8" quantizes with ONNX Runtime's tools); every engine but torch also
# exports the prefix to ONNX, and each of these extras brings onnx.
_EXTRAS = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime",),
           "onnxruntime-int8": ("onnxruntime",), "openvino-int8": ("openvino", "onnxruntime")}
_PACKAGES = {engine: (*extras, "onnx") for engine, extras in _EXTRAS.items()}
#: Images an int8 engine is calibrated on: the first of the fitted images in the
#: order of their content digests (so the same images, whatever their order in X).
CALIBRATION_IMAGES = 32


def quantized(engine):
    """Whether ``engine`` computes in int8 (and needs calibrating first)."""
    return engine.endswith("-int8")


def available(engine):
    """Whether ``engine`` can run here (its package imports)."""
    return not _missing(engine)


def _missing(engine):
    """The packages ``engine`` needs that do not import here."""
    missing = []
    for package in _PACKAGES.get(engine, ()):
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    return missing


def _extras(engine, missing):
    """The extras that install ``missing`` (onnx: the engine's first)."""
    extras = _EXTRAS[engine]
    return list(dict.fromkeys(p if p in extras else extras[0] for p in missing))


def resolve_engine(engine, device, strict=True):
    """The engine that will run: ``"auto"`` decided, an explicit one checked.

    Parameters
    ----------
    engine : {"auto", "torch", "openvino", "onnxruntime", "onnxruntime-int8", "openvino-int8"}
    device : str
        CUDA devices always run torch.
    strict : bool, default=True
        False: an explicit engine that is not installed falls back to torch
        with a warning (loading a model saved elsewhere) instead of raising.

    Raises
    ------
    ImportError
        An explicit engine whose package is not installed, naming the extra.
    ValueError
        A CPU-only engine asked for on CUDA.
    """
    cuda = torch.device(device).type == "cuda"
    if engine == "auto":
        return "torch" if cuda else next((e for e in AUTO_ORDER if available(e)), "torch")
    if engine != "torch" and cuda:
        raise ValueError(f"engine={engine!r} runs on the CPU; with device={device!r} use "
                         "engine='torch' or 'auto'.")
    missing = _missing(engine)
    if missing:
        message = (f"engine={engine!r} needs the {' and '.join(missing)} package"
                   f"{'s' if len(missing) > 1 else ''}: pip install "
                   f"'sktransfer[{','.join(_extras(engine, missing))}]' (or use engine='auto').")
        if strict:
            raise ImportError(message)
        warnings.warn(f"{message} Using engine='torch'.", RuntimeWarning, stacklevel=3)
        return "torch"
    return engine


_EXPORT_LOCK = threading.Lock()


@contextlib.contextmanager
def _exporter_log_off():
    """Keep the TorchScript exporter's C++ log off during an export.

    Its ``setup_onnx_logging`` tests the function ``_jit_is_onnx_log_enabled``
    instead of calling it, so every export turns the log on for good, and an
    export that fails (before the fallback to torch) prints
    its whole graph to standard output.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import utils as exporter
    except ImportError:  # another torch: its own behaviour
        yield
        return
    original = getattr(exporter, "setup_onnx_logging", None)
    with _EXPORT_LOCK:
        if original is not None:
            exporter.setup_onnx_logging = lambda verbose: contextlib.nullcontext()
        try:
            yield
        finally:
            if original is not None:
                exporter.setup_onnx_logging = original


def to_onnx(module, example, input_name="x", output_name="y"):
    """ONNX bytes of ``module`` on batches shaped like ``example`` (any batch size).

    The package's one exporter, for the engines and for ``export_onnx``: torch's
    TorchScript exporter (opset 17), five to seven times faster than the
    dynamo exporter on the same networks (MaxViT-T: 10 s against 51 s).
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _exporter_log_off():
        warnings.simplefilter("ignore")  # the exporter's notes on the legacy path
        fastpath = torch.backends.mha.get_fastpath_enabled()
        # attention's fused inference kernel has no ONNX form; the same computation by
        # its plain operations has
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            torch.onnx.export(module, (example,), buffer, input_names=[input_name],
                              output_names=[output_name], dynamic_axes={input_name: {0: "n"}},
                              dynamo=False, opset_version=17)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()


def _session(model_bytes, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Without its arena ONNX Runtime is slower (1.26x torch instead of 1.7-1.85x here),
    # but the arena held 0.5-1.7 GB more at its peak: over the memory bound of a fit.
    options.enable_cpu_mem_arena = False
    # Its idle workers would spin on the cores the next batch is decoding on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: not its notes on unused initializers
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.contiguous().numpy()})[0])


def compile_openvino(model_bytes, threads):
    """OpenVINO's compiled model of ONNX bytes, set up as the ``openvino`` engines run it."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(model_bytes, b"")  # the weights are inside the ONNX bytes
    return core.compile_model(model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
        # float32 is what torch computes; OpenVINO's default on CPUs with bfloat16
        # units is bfloat16, 2x faster here but 4e-2 away from torch.
        "INFERENCE_PRECISION_HINT": "f32",
        # Its cache of shape-specialised kernels held 0.7-1.3 GB more at the peak of a
        # 2,000-image fit (bench_speed.py's memory worker), for no measurable speed.
        "CPU_RUNTIME_CACHE_CAPACITY": "0"})


#: Batches OpenVINO runs at once for the threads of a process (more wait their turn).
OPENVINO_JOBS = 4


def _openvino(model_bytes, threads):
    """OpenVINO's compiled ONNX model as a function of a batch, safe to call from threads.

    The calls go through one AsyncInferQueue: a request runs one batch at a
    time, so threads sharing the compiled model's own request would fail
    ("Infer Request is busy"), and the queue gives two callers submitting at
    once the same idle request unless they take turns.  Measured in
    bench_speed.py against an infer request per thread: as fast or a little
    faster, from one, two and four threads.
    """
    import openvino as ov

    queue = ov.AsyncInferQueue(compile_openvino(model_bytes, threads), OPENVINO_JOBS)

    def finished(request, call):
        try:
            call["out"] = request.get_output_tensor(0).data.copy()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            call["error"] = exc
        finally:
            call["done"].set()
    queue.set_callback(finished)
    submitting = threading.Lock()  # the queue hands out its idle requests to one caller at a time

    def run_openvino(x):
        call = {"done": threading.Event()}
        with submitting:
            queue.start_async([x.contiguous().numpy()], call)
        call["done"].wait()
        if "error" in call:
            raise call["error"]
        return torch.from_numpy(call["out"])
    return run_openvino


def _quantize(model_bytes, calibration):
    """``(int8 model bytes, calibration JSON)``; ``calibration``: a batch, or the JSON of one."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        """The calibration batch, eight images at a time."""

        def __init__(self, batch):
            self.chunks = iter([{"x": batch[i:i + 8].contiguous().numpy()}
                                for i in range(0, len(batch), 8)])

        def get_next(self):
            return next(self.chunks, None)

    reader = None
    with tempfile.TemporaryDirectory(prefix="sktransfer-int8-") as tmp:
        tmp = Path(tmp)
        (tmp / "fp32.onnx").write_bytes(model_bytes)
        ranges = tmp / "calibration.json"
        if isinstance(calibration, str):
            ranges.write_text(calibration)  # read back by ONNX Runtime: no calibration run
        else:
            reader = Batches(calibration)
        # ONNX Runtime's quantizer logs its advice, one line per layer, through the root
        # logger; a filter drops those records only (the root logger's level stays as is)
        root, notes = logging.getLogger(), _QuantizerNotes()
        root.addFilter(notes)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_static(tmp / "fp32.onnx", tmp / "int8.onnx", reader,
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibration_cache_path=ranges)
        finally:
            root.removeFilter(notes)
        return (tmp / "int8.onnx").read_bytes(), ranges.read_text()


class _QuantizerNotes(logging.Filter):
    """Drops the log records of ONNX Runtime's quantization package, and only those."""

    def __init__(self):
        super().__init__()
        import onnxruntime.quantization

        self.folder = os.path.dirname(onnxruntime.quantization.__file__) + os.sep

    def filter(self, record):  # noqa: D102 - logging's protocol
        return not os.path.abspath(record.pathname).startswith(self.folder)


def compile_prefix(modules, input_shape, engine, device="cpu", calibration=None):
    """A function running ``modules`` in order on a batch, with ``engine``.

    Parameters
    ----------
    modules : list of torch.nn.Module
        In inference mode, BatchNorm already folded; not changed here.
    input_shape : tuple of int
        One image's shape, ``(3, s, s)``.
    engine : {"torch", "openvino", "onnxruntime", "onnxruntime-int8", "openvino-int8"}
    device : str, default="cpu"
    calibration : torch.Tensor, str or None, default=None
        int8 only: a batch of preprocessed images to calibrate on, or the
        calibration JSON an earlier calibration gave (the function's
        ``calibration`` attribute).

    Returns
    -------
    callable
        ``(n, *input_shape)`` float tensor -> float tensor on the CPU (torch: on
        ``device``).
    """
    if engine == "torch" or not modules:
        chain = [m.to(device, memory_format=torch.channels_last) for m in modules]

        def run_torch(x):
            if x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            for module in chain:
                x = module(x)
            return x
        return run_torch
    sequential = nn.Sequential(*modules).eval()
    example = torch.zeros(1, *input_shape)
    threads = torch.get_num_threads()
    if engine == "openvino":
        # Through ONNX: 0.6-0.8 s for MobileNetV2, against 2-3 s for ov.convert_model's
        # tracing, for the same graph (same speed, same outputs within 1e-6).
        return _openvino(to_onnx(sequential, example), threads)
    if engine == "onnxruntime":
        return _session(to_onnx(sequential, example), threads)
    if quantized(engine):
        if calibration is None:
            raise ValueError(f"engine={engine!r} needs a calibration batch or JSON")
        model, ranges = _quantize(to_onnx(sequential, example), calibration)
        run = (_openvino if engine == "openvino-int8" else _session)(model, threads)
        run.calibration = ranges
        return run
    raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
