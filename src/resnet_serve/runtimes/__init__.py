"""The classifier runtimes, one module each behind one interface (:class:`Runtime`): OpenVINO and
ONNX Runtime on the CPU (our Python-backend models, or Triton's native backends in NVIDIA's images),
PyTorch on the GPU, TensorRT. A new runtime is a module here and a line in :data:`RUNTIMES`."""

from __future__ import annotations

from resnet_serve.runtimes import onnxruntime, openvino, tensorrt, torch_gpu
from resnet_serve.runtimes.base import Runtime, set_parameters

_ALL = (openvino.PYTHON, openvino.NATIVE, onnxruntime.PYTHON, onnxruntime.NATIVE, tensorrt.PLAN, torch_gpu.TORCH)
RUNTIMES: dict[str, Runtime] = {runtime.kind: runtime for runtime in _ALL}

__all__ = ["RUNTIMES", "Runtime", "set_parameters"]
