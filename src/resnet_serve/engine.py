"""ONNX -> TensorRT plan with the ``tensorrt`` Python API (what the seed does with trtexec).

TensorRT is optional and needs NVIDIA's libraries (NVIDIA's containers have them); where the
module is missing the build fails with a message saying so, and no plan is ever faked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_serve.contract import CLASSIFIER_INPUT, IMAGE_SIZE, MAX_BATCH_SIZE
from resnet_serve.errors import ResnetServeError


class EngineError(ResnetServeError):
    """The TensorRT plan could not be built."""


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """Precision and the optimisation profile of the ``input`` batch axis (the seed: 1/1/256, fp16)."""

    fp16: bool = True
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = MAX_BATCH_SIZE
    workspace_bytes: int = 4 << 30

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise EngineError(
                f"need 1 <= min <= opt <= max batch, got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError(
            "TensorRT's Python package `tensorrt` is not installed here, so no plan can be built. Build it "
            "where TensorRT exists (e.g. inside nvcr.io/nvidia/tritonserver:<yy.mm>-py3 or the matching "
            "nvcr.io/nvidia/tensorrt image, with the same TensorRT version as the server that loads it), "
            f"or serve the ONNX model instead (`resnet-serve repo --classifier onnx`). ({exc})"
        ) from None
    return tensorrt


def build_plan(onnx_model: Path, output: Path, spec: EngineSpec = EngineSpec()) -> Path:
    """Parse ``onnx_model``, build a serialized engine for this GPU, write it to ``output``."""
    spec.check()
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_model).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_model}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    profile.set_shape(CLASSIFIER_INPUT, (spec.min_batch, *shape), (spec.opt_batch, *shape), (spec.max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT's builder returned no engine (its log above says why)")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(bytes(serialized))
    return output
