"""OpenVINO on the CPU for the classifier: the precision the chip runs fastest, compiled once.

``auto`` picks bf16 where OpenVINO reports the CPU can compute it (``OPTIMIZATION_CAPABILITIES``
lists ``BF16`` on CPUs with avx512_bf16 or AMX), else fp32. ``fp32`` is always exact fp32 (OpenVINO's
own default on such CPUs is bf16, so it is set explicitly). ``int8`` runs a quantized model (the QDQ
ONNX of ``export --int8``: OpenVINO reads its Q/DQ pairs as FakeQuantize and runs int8 kernels).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from resnet_serve.errors import ResnetServeError
from resnet_serve.host import available_cores, classifier_share
from resnet_serve.model_params import int_parameter
from resnet_serve.run_batches import DEFAULT_MAX_RUN_BATCH, run_in_batches

if TYPE_CHECKING:
    import openvino as ov

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEVICE = "CPU"
# The element type OpenVINO computes the float layers in, per precision we serve. int8 models keep
# their non-quantized layers (the first conv's input, softmax-free head) in fp32: exact where not int8.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class PrecisionError(ResnetServeError):
    """The precision asked for cannot run on this CPU or with this model file."""


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU computes natively, e.g. ['BF16', 'FP32', 'INT8', ...]."""
    import openvino as ov

    return list(ov.Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def check_precision_name(requested: str) -> None:
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")


def resolve_precision(requested: str, capabilities: Collection[str]) -> str:
    """The precision that will run: ``auto`` becomes bf16 where the CPU has it, else fp32."""
    check_precision_name(requested)
    has_bf16 = "BF16" in capabilities
    if requested == "auto":
        return "bf16" if has_bf16 else "fp32"
    if requested == "bf16" and not has_bf16:
        raise PrecisionError(
            f"bf16 needs a CPU with avx512_bf16 or AMX; OpenVINO reports only {', '.join(sorted(capabilities))}"
        )
    return requested


# Batches of at least this many images run on the loaded model (``busy_threads``): a batch of several
# images mostly means requests queued, so the next batch is being decoded beside it (one request of
# 4+ images alone runs there too). Smaller ones, a lone request at low load, run on every core as
# before (16-vCPU Xeon, bf16, 1 in flight, classifier compute 5.3 ms on 16 threads, 7.3 on 12; int8
# there measured 8.4 on 16 and 5.1 on 12, within that host's noise: RESULTS.md issue 31).
LOADED_FROM = 4


def compile_properties(precision: str, threads: int) -> dict[str, object]:
    """OpenVINO CPU properties for a resolved precision: one stream, LATENCY hint, ``threads`` threads.

    One stream of every thread on each batch: Triton already forms the batches. Splitting a batch
    across 2-8 streams (THROUGHPUT) measured erratic on 16 cores, from 0.5x to 1.1x of one stream
    (benchmarks/cpu_cores.py, RESULTS.md issue 31).
    """
    if precision not in _INFERENCE_PRECISION:
        raise PrecisionError(f"resolve the precision first; got {precision!r}")
    return {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision],
    }


def is_quantized(model: ov.Model) -> bool:
    """True for a model with quantized layers (Q/DQ pairs read as FakeQuantize, or NNCF's output)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops())


def _check_quantized(model: ov.Model, model_file: Path, precision: str) -> None:
    quantized = is_quantized(model)
    if quantized != (precision == "int8"):
        what = "an int8 (quantized)" if quantized else "a float"
        raise PrecisionError(f"{model_file} is {what} model, which cannot run at precision {precision}")


def check_model_precision(model_file: Path, precision: str) -> None:
    """Refuse a float model at int8, or an int8 one at another precision (PrecisionError)."""
    import openvino as ov

    _check_quantized(ov.Core().read_model(str(model_file)), model_file, precision)


class OpenVinoClassifier:
    """Logits from an ONNX (or OpenVINO IR) model compiled once for the CPU.

    The model keeps its dynamic batch axis: each compiled model serves every batch size, at most
    ``max_run_batch`` images per call (as the ONNX Runtime classifier). ``threads`` (0: the cores
    this process may use) run it; batches of LOADED_FROM or more images run on ``busy_threads``
    (0: ``threads`` where given, else :func:`~resnet_serve.host.classifier_share` of the cores), in a
    second compiled model where that number differs. :meth:`warm_up` runs every size at load so
    serving memory is set before the first request.
    """

    def __init__(
        self,
        *,
        model_file: Path | str,
        precision: str = "auto",
        threads: int = 0,
        busy_threads: int = 0,
        max_run_batch: int = DEFAULT_MAX_RUN_BATCH,
        capabilities: Collection[str] | None = None,
    ) -> None:
        import openvino as ov

        if max_run_batch < 1:
            raise ValueError(f"max_run_batch must be at least 1, got {max_run_batch}")
        if threads < 0 or busy_threads < 0:
            raise ValueError(f"threads must be 0 (auto) or more, got {threads} and {busy_threads}")
        core = ov.Core()
        if capabilities is None:
            capabilities = core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
        self.precision = resolve_precision(precision, capabilities)
        model = core.read_model(str(model_file))
        _check_quantized(model, model_file, self.precision)
        self.threads = threads or available_cores()
        # threads given and no busy_threads: the caller's number for every batch; no batch of
        # LOADED_FROM images when calls stay under it
        busy = busy_threads or (threads or classifier_share(self.threads))
        self.busy_threads = min(busy, self.threads) if max_run_batch >= LOADED_FROM else self.threads
        self.max_run_batch = max_run_batch
        self.compiled = core.compile_model(model, DEVICE, compile_properties(self.precision, self.threads))
        self.request = self.compiled.create_infer_request()
        self.busy_request = self.request
        if self.busy_threads != self.threads:
            busy = core.compile_model(model, DEVICE, compile_properties(self.precision, self.busy_threads))
            self.busy_request = busy.create_infer_request()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return run_in_batches(self._run, images, self.max_run_batch)

    def _run(self, images: np.ndarray) -> np.ndarray:
        # share_inputs: OpenVINO reads the (contiguous fp32) batch in place; outputs are copied out,
        # because a request reuses its output buffer on the next call.
        request = self.busy_request if len(images) >= LOADED_FROM else self.request
        return request.infer({0: np.ascontiguousarray(images, dtype=np.float32)}, share_inputs=True)[0]

    def warm_up(self) -> None:
        """Run every batch size from ``max_run_batch`` down to 1 once, on zeros.

        OpenVINO keeps per-shape state (its kernels and buffers for each input shape): over batch
        sizes 1..32 a model warmed on powers of two only grew by another 19-48% of its RSS the first
        time it saw each size, and not at all the second time. Running every size at load sets that
        bound before serving (the load takes ~530 images of compute at the default of 32), on each
        compiled model for the sizes it runs.
        """
        shape = [dim.get_length() for dim in self.compiled.input(0).get_partial_shape()[1:]]
        zeros = np.zeros([self.max_run_batch, *shape], np.float32)
        for size in range(self.max_run_batch, 0, -1):
            self._run(zeros[:size])

    def describe(self) -> str:
        """What runs, as OpenVINO reports it after compiling, e.g. ``bf16 (bf16 compute), 16 threads (12 for
        batches of 4+), at most 32 a call``."""
        compute = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        busy = f" ({self.busy_threads} for batches of {LOADED_FROM}+)" if self.busy_request is not self.request else ""
        return f"{self.precision} ({compute} compute), {threads} threads{busy}, at most {self.max_run_batch} a call"


# The model's names in a version directory: an ONNX file, or an OpenVINO IR pair.
ONNX_FILE, IR_FILE, IR_WEIGHTS_FILE = "model.onnx", "model.xml", "model.bin"


def model_files(model_file: Path) -> list[tuple[Path, str]]:
    """(source, name in the version directory) of a model: ``model.onnx``, or ``model.xml`` + ``model.bin``."""
    if model_file.suffix == ".xml":
        return [(model_file, IR_FILE), (model_file.with_suffix(".bin"), IR_WEIGHTS_FILE)]
    return [(model_file, ONNX_FILE)]


def installed_model_file(version: Path) -> Path:
    """The model :func:`model_files` put in a version directory: the IR when there is one, else the ONNX file."""
    return version / IR_FILE if (version / IR_FILE).is_file() else version / ONNX_FILE


def served_classifier(version: Path, params: Mapping[str, str], threads: str = "threads") -> OpenVinoClassifier:
    """The classifier a Triton model's version directory and config parameters describe (``threads``: the
    parameter that holds its threads), warmed up."""
    classifier = OpenVinoClassifier(
        model_file=installed_model_file(version),
        precision=params.get("precision", "fp32"),
        threads=int_parameter(params, threads, 0),
        max_run_batch=int_parameter(params, "max_run_batch", DEFAULT_MAX_RUN_BATCH),
    )
    classifier.warm_up()
    return classifier
