"""ONNX Runtime on the CPU: our Python-backend model (servers without the onnxruntime backend), or
Triton's own ``onnxruntime`` backend in NVIDIA's tritonserver images. The precision is the model
file's: fp32, or int8 for the QDQ model of ``export --int8``."""

from __future__ import annotations

from dataclasses import dataclass

from resnet_serve.openvino_classifier import PrecisionError, check_precision_name
from resnet_serve.runtimes.base import Runtime, set_parameters


@dataclass(frozen=True)
class OnnxRuntime(Runtime):
    """What both ONNX Runtime classifiers share: the model file's precision."""

    def precision(self, requested: str) -> str:
        """fp32 for ``auto``; bf16 refused (ONNX Runtime has no fast bf16 on the CPU)."""
        check_precision_name(requested)
        if requested == "bf16":
            raise PrecisionError("ONNX Runtime has no fast bf16 on the CPU: use --runtime openvino for bf16")
        return "fp32" if requested == "auto" else requested


@dataclass(frozen=True)
class OrtPython(OnnxRuntime):
    """The requests of one execution run together, at most ``max_run_batch`` images per call."""

    def configure(self, config, spec) -> None:
        from tritonclient.grpc import model_config_pb2 as mc

        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.classifier_instances)
        set_parameters(
            config, {"intra_op_threads": spec.classifier_threads, "max_run_batch": spec.classifier_run_batch}
        )

    def in_process(self, spec):
        from resnet_serve.ort_session import OrtClassifier, create_session

        session = create_session(spec.model_file, intra_op_threads=spec.classifier_threads)
        return OrtClassifier(session, spec.classifier_run_batch)


@dataclass(frozen=True)
class OrtNative(OnnxRuntime):
    def configure(self, config, spec) -> None:
        from tritonclient.grpc import model_config_pb2 as mc

        config.backend = "onnxruntime"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_AUTO, count=spec.classifier_instances)


PYTHON = OrtPython(
    "ort", "ort", "python backend + ONNX Runtime (CPU; servers without the ORT backend)",
    source="classifier_ort",
)  # fmt: skip
NATIVE = OrtNative("onnx", "onnx", "onnxruntime_onnx backend (NVIDIA's containers)")
