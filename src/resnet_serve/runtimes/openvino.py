"""OpenVINO on the CPU: our Python-backend model (the PyPI tritonserver has no OpenVINO backend),
or Triton's own ``openvino`` backend in NVIDIA's tritonserver images. Both take an ONNX file or an
OpenVINO IR pair (``.xml`` + ``.bin``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_serve.openvino_classifier import (
    OpenVinoClassifier,
    PrecisionError,
    check_model_precision,
    check_precision_name,
    cpu_capabilities,
    model_files,
    resolve_precision,
)
from resnet_serve.runtimes.base import Runtime, set_parameters


def _kind_cpu(config, count: int) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)


@dataclass(frozen=True)
class OpenVino(Runtime):
    """What both OpenVINO classifiers share: an ONNX file or an IR pair in the version directory."""

    def files(self, model_file: Path) -> list[tuple[Path, str]]:
        return model_files(Path(model_file))


@dataclass(frozen=True)
class OpenVinoPython(OpenVino):
    """Compiled for every batch size; threads by the cores where it loads (OpenVinoClassifier)."""

    def precision(self, requested: str) -> str:
        """Resolved now, for this machine's CPU (the one expected to serve), so the repository records it."""
        return resolve_precision(requested, cpu_capabilities())

    def check_model(self, model_file: Path, precision: str) -> None:
        check_model_precision(model_file, precision)

    def configure(self, config, spec) -> None:
        config.backend = "python"
        _kind_cpu(config, spec.classifier_instances)
        set_parameters(config, {"precision": spec.precision, "threads": spec.classifier_threads,
                                "max_run_batch": spec.classifier_run_batch})  # fmt: skip

    def fused_parameters(self, spec) -> dict[str, object]:
        return {"precision": spec.precision, "classifier_threads": spec.classifier_threads,
                "max_run_batch": spec.classifier_run_batch}  # fmt: skip

    def in_process(self, spec):
        return OpenVinoClassifier(model_file=spec.model_file, precision=self.precision(spec.precision),
                                  threads=spec.classifier_threads, max_run_batch=spec.classifier_run_batch)  # fmt: skip


@dataclass(frozen=True)
class OpenVinoNative(OpenVino):
    """Triton's openvino backend: one stream, LATENCY hint (as ours), bf16 when asked."""

    def precision(self, requested: str) -> str:
        """It can ask for bf16 but not forbid it: ``auto`` stays OpenVINO's own choice, fp32 is refused."""
        check_precision_name(requested)
        if requested == "fp32":
            raise PrecisionError(
                "Triton's openvino backend cannot force fp32 (OpenVINO computes bf16 on CPUs that have it): "
                "use --runtime ort for exact fp32"
            )
        return requested

    def configure(self, config, spec) -> None:
        config.backend = "openvino"
        config.default_model_filename = self.files(spec.model_file)[0][1]
        _kind_cpu(config, spec.classifier_instances)
        values: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if spec.classifier_threads:
            values["INFERENCE_NUM_THREADS"] = spec.classifier_threads
        if spec.precision == "bf16":
            values["HINT_BF16"] = "YES"
        set_parameters(config, values)


PYTHON = OpenVinoPython(
    "openvino", "openvino", "python backend + OpenVINO (CPU; precision by the chip: bf16, int8)",
    source="classifier_openvino", fused_source="fused_cpu",
)  # fmt: skip
NATIVE = OpenVinoNative("openvino_native", "openvino", "openvino backend (NVIDIA's containers)")
