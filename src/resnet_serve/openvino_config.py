"""What the repository writes for the OpenVINO classifier: the precision that will run, the model's
parameters, and its model files (an ONNX file, or an OpenVINO IR pair ``.xml`` + ``.bin``).

Two ways to run it: ``openvino``, our Python-backend model (the PyPI tritonserver has no OpenVINO
backend), and ``openvino_native``, Triton's own ``openvino`` backend in NVIDIA's tritonserver images.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from resnet_serve.openvino_classifier import (
    OpenVinoClassifier,
    PrecisionError,
    check_precision_name,
    cpu_capabilities,
    resolve_precision,
)

PYTHON = "openvino"
NATIVE = "openvino_native"
# Classifier kinds whose precision is fixed by the model file: fp32, or int8 for a quantized one.
FILE_PRECISION_KINDS = ("ort", "onnx")
# The model's names in a version directory.
ONNX_FILE, IR_FILE, IR_WEIGHTS_FILE = "model.onnx", "model.xml", "model.bin"


def serving_precision(classifier: str, requested: str, capabilities: Collection[str] | None = None) -> str:
    """The precision the classifier will run, resolved now so that the repository records it.

    ``capabilities`` defaults to what OpenVINO reports for this machine's CPU (the one expected to serve).
    Triton's native openvino backend can ask for bf16 but not forbid it: there ``auto`` stays ``auto``
    (OpenVINO's own choice: bf16 where the CPU has it) and ``fp32`` is refused.
    """
    check_precision_name(requested)
    if classifier == PYTHON:
        return resolve_precision(requested, cpu_capabilities() if capabilities is None else capabilities)
    if classifier == NATIVE:
        if requested == "fp32":
            raise PrecisionError(
                "Triton's openvino backend cannot force fp32 (OpenVINO computes bf16 on CPUs that have it): "
                "use --runtime ort for exact fp32"
            )
        return requested
    if classifier in FILE_PRECISION_KINDS:
        if requested == "bf16":
            raise PrecisionError("ONNX Runtime has no fast bf16 on the CPU: use --runtime openvino for bf16")
        return "fp32" if requested == "auto" else requested
    return requested


def python_parameters(precision: str, threads: int, max_run_batch: int) -> dict[str, object]:
    """Parameters of our Python-backend OpenVINO model (read back by triton_models/classifier_openvino.py)."""
    return {"precision": precision, "threads": threads, "max_run_batch": max_run_batch}


def native_parameters(precision: str, threads: int) -> dict[str, object]:
    """Parameters of Triton's openvino backend: one stream, LATENCY hint (as ours), bf16 when asked."""
    values: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if threads:
        values["INFERENCE_NUM_THREADS"] = threads
    if precision == "bf16":
        values["HINT_BF16"] = "YES"
    return values


def in_process_classifier(spec) -> Callable[[np.ndarray], np.ndarray]:
    """The CPU classifier of a repository spec, in this process (the bench's in-process ceiling)."""
    precision = serving_precision(spec.classifier, spec.precision)
    if spec.classifier == PYTHON:
        return OpenVinoClassifier(
            model_file=spec.model_file,
            precision=precision,
            threads=spec.classifier_threads,
            max_run_batch=spec.classifier_run_batch,
        )
    from resnet_serve.ort_session import OrtClassifier, create_session

    return OrtClassifier(
        create_session(spec.model_file, intra_op_threads=spec.classifier_threads), spec.classifier_run_batch
    )


def model_files(model_file: Path) -> list[tuple[Path, str]]:
    """(source, name in the version directory) of a model: ``model.onnx``, or ``model.xml`` + ``model.bin``."""
    if model_file.suffix == ".xml":
        return [(model_file, IR_FILE), (model_file.with_suffix(".bin"), IR_WEIGHTS_FILE)]
    return [(model_file, ONNX_FILE)]


def installed_model_file(version: Path) -> Path:
    """The model :func:`model_files` put in a version directory: the IR when there is one, else the ONNX file."""
    return version / IR_FILE if (version / IR_FILE).is_file() else version / ONNX_FILE
