"""TensorRT: a plan built by ``resnet-serve engine`` where TensorRT exists, served by Triton's
tensorrt_plan platform in NVIDIA's containers with a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_serve.runtimes.base import Runtime


@dataclass(frozen=True)
class TensorRtPlan(Runtime):
    def check_model(self, model_file: Path, precision: str) -> None:
        """Refuse an ONNX file given as the plan (ONNX Runtime reads it: a TensorRT engine it cannot)."""
        from resnet_serve.model_card import ModelCardError, reads_as_onnx

        if reads_as_onnx(model_file):
            raise ModelCardError(f"{model_file} is an ONNX model, not a TensorRT plan: serve it with --onnx, "
                                 "or build a plan from it with `resnet-serve engine` where TensorRT is")  # fmt: skip

    def configure(self, config, spec) -> None:
        from tritonclient.grpc import model_config_pb2 as mc

        config.platform = "tensorrt_plan"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.classifier_instances)


PLAN = TensorRtPlan(
    "trt", "trt", "tensorrt_plan (NVIDIA's containers with a GPU)", model_file="model.plan", reads_onnx=False
)
