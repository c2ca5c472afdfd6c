"""Writes the Triton model repository: preprocess -> classifier, as the seed's ensemble.

Configs are ``model_config_pb2.ModelConfig`` messages written with protobuf's ``text_format``. The
ensemble keeps the seed's contract: ``ensemble_python_resnet50``, input ``INPUT`` UINT8 [-1],
output ``OUTPUT`` FP32 [1000], max_batch_size 256.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from resnet_serve.errors import ResnetServeError
from resnet_serve.ort_session import DEFAULT_MAX_RUN_BATCH
from resnet_serve.preprocess import PreprocessOptions

ENSEMBLE_NAME = "ensemble_python_resnet50"
PREPROCESS_NAME = "preprocess"
MARKER_FILE = ".resnet_serve.json"
LABELS_FILE = "labels.txt"
NUM_CLASSES = 1000
LIMIT_PARAMETERS = ("max_image_bytes", "max_request_bytes", "max_pixels")  # preprocess refuses larger input

PROFILES = {
    "ours": "batched, ragged, aspect-preserving preprocess (the product)",
    "seed": "the seed example exactly: squash resize, transforms per request, no dynamic batching (a baseline)",
    "fused": "GPU only: preprocess + classifier in ONE Python model named as the ensemble (one hop, one context)",
}
# classifier kind -> (model name, model file name, how Triton runs it)
CLASSIFIERS = {
    "ort": ("resnet50_ort", "model.onnx", "python backend + ONNX Runtime (CPU; servers without the ORT backend)"),
    "onnx": ("resnet50_onnx", "model.onnx", "onnxruntime_onnx backend (NVIDIA's containers)"),
    "trt": ("resnet50_trt", "model.plan", "tensorrt_plan (NVIDIA's containers with a GPU)"),
    "torch": ("resnet50_torch", "model.pt", "python backend + PyTorch fp16 CUDA graphs (GPU; state_dict file)"),
}


class RepositoryError(ResnetServeError):
    """The repository cannot be written as asked."""


@dataclass(frozen=True)
class RepositorySpec:
    """What goes into the repository."""

    model_file: Path
    classifier: str = "ort"
    profile: str = "ours"
    max_batch_size: int = 256
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    preprocess_instances: int = 1
    preprocess_threads: int = 0
    classifier_instances: int = 1
    classifier_threads: int = 0
    max_queue_delay_us: int = 1000
    max_queue_size: int = 1024  # requests waiting for the first step; more are refused at once
    classifier_run_batch: int = DEFAULT_MAX_RUN_BATCH  # ONNX Runtime classifier: images per call (bounds its memory)
    device: str = "cpu"  # "cuda": nvJPEG preprocess on the GPU, tensors passed by DLPack
    dtype: str = "fp16"  # the torch classifier's precision (and the GPU preprocess output)
    cuda_graphs: bool = True

    @property
    def classifier_name(self) -> str:
        return CLASSIFIERS[self.classifier][0]

    @property
    def passes_gpu_tensors(self) -> bool:
        """True when the preprocess step hands GPU tensors to the classifier (the server needs a CUDA pool)."""
        return self.device == "cuda" and self.profile == "ours"

    @property
    def image_tensor_type(self) -> int:
        """The type of the preprocessed images passed between the steps."""
        fp16 = self.classifier == "torch" and self.dtype == "fp16" and self.profile == "ours"
        return mc.TYPE_FP16 if fp16 else mc.TYPE_FP32


def labels() -> list[str]:
    """The 1000 ImageNet class names, upper case as in the seed (index 504 is ``COFFEE MUG``)."""
    return resources.files("resnet_serve").joinpath(LABELS_FILE).read_text().splitlines()


def _parameters(config: mc.ModelConfig, values: dict[str, object]) -> None:
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        config.parameters[key].string_value = text


def _batch_and_guard_images(config: mc.ModelConfig, spec: RepositorySpec, *options: str) -> None:
    """For a model taking encoded images: dynamic batching, a bounded queue, and the preprocess
    limits and ``options`` as parameters."""
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    config.dynamic_batching.default_queue_policy.max_queue_size = spec.max_queue_size
    values = asdict(spec.preprocess)
    _parameters(config, {key: values[key] for key in (*LIMIT_PARAMETERS, "exif_transpose", *options)})


def preprocess_config(spec: RepositorySpec) -> mc.ModelConfig:
    """Python-backend preprocess: UINT8 [-1] (ragged, so images of any size batch together)."""
    config = mc.ModelConfig(name=PREPROCESS_NAME, backend="python", max_batch_size=spec.max_batch_size)
    seed = spec.profile == "seed"
    config.input.add(name="INPUT_0", data_type=mc.TYPE_UINT8, dims=[-1], allow_ragged_batch=not seed)
    config.output.add(
        name="OUTPUT_0", data_type=spec.image_tensor_type, dims=[3, spec.preprocess.crop, spec.preprocess.crop]
    )
    # A Python model with UINT8 input must run in a KIND_CPU instance group.
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1 if seed else spec.preprocess_instances)
    if seed:
        return config
    _batch_and_guard_images(config, spec, "jpeg_draft")
    _parameters(config, {"threads": spec.preprocess_threads})
    if spec.device == "cuda":
        _parameters(config, {"device": "cuda:0", "dtype": "fp16" if spec.image_tensor_type == mc.TYPE_FP16 else "fp32"})
    return config


def classifier_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The ResNet-50 step: ``input`` FP32 [3, 224, 224] -> ``output`` FP32 [1000] with labels."""
    name = spec.classifier_name
    config = mc.ModelConfig(name=name, max_batch_size=spec.max_batch_size)
    if spec.classifier == "ort":
        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.classifier_instances)
        _parameters(config, {"intra_op_threads": spec.classifier_threads, "max_run_batch": spec.classifier_run_batch})
    elif spec.classifier == "torch":
        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.classifier_instances)
        seed = spec.profile == "seed"
        _parameters(config, {"dtype": "fp32" if seed else spec.dtype, "cuda_graphs": spec.cuda_graphs and not seed})
        # Receive the preprocessed batch where it is (GPU) by DLPack instead of a host copy.
        _parameters(config, {"FORCE_CPU_ONLY_INPUT_TENSORS": "no"})
    elif spec.classifier == "onnx":
        config.backend = "onnxruntime"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_AUTO, count=spec.classifier_instances)
    else:
        config.platform = "tensorrt_plan"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.classifier_instances)
    crop = spec.preprocess.crop
    config.input.add(name="input", data_type=spec.image_tensor_type, dims=[3, crop, crop])
    config.output.add(name="output", data_type=mc.TYPE_FP32, dims=[NUM_CLASSES], label_filename=LABELS_FILE)
    if spec.profile != "seed":
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    return config


def ensemble_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The seed's ensemble: ``INPUT`` -> preprocess -> classifier -> ``OUTPUT``."""
    config = mc.ModelConfig(name=ENSEMBLE_NAME, platform="ensemble", max_batch_size=spec.max_batch_size)
    config.input.add(name="INPUT", data_type=mc.TYPE_UINT8, dims=[-1])
    config.output.add(name="OUTPUT", data_type=mc.TYPE_FP32, dims=[NUM_CLASSES], label_filename=LABELS_FILE)
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=PREPROCESS_NAME,
        model_version=-1,
        input_map={"INPUT_0": "INPUT"},
        output_map={"OUTPUT_0": "preprocessed_image"},
    )
    steps.add(
        model_name=spec.classifier_name,
        model_version=-1,
        input_map={"input": "preprocessed_image"},
        output_map={"output": "OUTPUT"},
    )
    return config


def fused_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The fused profile: one Python model with the ensemble's name, input and output."""
    config = mc.ModelConfig(name=ENSEMBLE_NAME, backend="python", max_batch_size=spec.max_batch_size)
    config.input.add(name="INPUT", data_type=mc.TYPE_UINT8, dims=[-1], allow_ragged_batch=True)
    config.output.add(name="OUTPUT", data_type=mc.TYPE_FP32, dims=[NUM_CLASSES], label_filename=LABELS_FILE)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.preprocess_instances)
    _batch_and_guard_images(config, spec)
    _parameters(config, {"device": "cuda:0", "dtype": spec.dtype, "cuda_graphs": spec.cuda_graphs})
    return config


def _write_config(model_dir: Path, config: mc.ModelConfig) -> None:
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))


def _install_file(source: Path, target: Path) -> None:
    """Hard-link when possible (the ONNX model is ~100 MB), else copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _model_source(name: str) -> str:
    return resources.files("resnet_serve.triton_models").joinpath(f"{name}.py").read_text()


def prepare_directory(root: Path) -> None:
    """Make ``root`` ready to hold a repository; refuse a non-empty directory we did not write."""
    if root.exists() and any(root.iterdir()) and not (root / MARKER_FILE).exists():
        raise RepositoryError(f"{root} is not empty and was not written by resnet-serve; choose another directory")
    if root.exists():
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)


def write_repository(root: Path | str, spec: RepositorySpec) -> Path:
    """Write (or rewrite) the whole model repository under ``root`` and return its path."""
    root = Path(root)
    if spec.profile not in PROFILES:
        raise RepositoryError(f"unknown profile {spec.profile!r}; choose one of {', '.join(PROFILES)}")
    if spec.device not in ("cpu", "cuda"):
        raise RepositoryError(f"unknown device {spec.device!r}; choose cpu or cuda")
    if spec.classifier not in CLASSIFIERS:
        raise RepositoryError(f"unknown classifier {spec.classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    model_file = Path(spec.model_file)
    if not model_file.is_file():
        raise RepositoryError(f"model file {model_file} does not exist")
    if spec.profile == "fused" and spec.classifier != "torch":
        raise RepositoryError("the fused profile runs on the GPU: use --device cuda (classifier torch)")
    prepare_directory(root)
    label_text = "\n".join(labels()) + "\n"
    if spec.profile == "fused":
        fused_dir = root / ENSEMBLE_NAME
        _write_config(fused_dir, fused_config(spec))
        (fused_dir / "1" / "model.py").write_text(_model_source("fused_gpu"))
        _install_file(model_file, fused_dir / "1" / "model.pt")
        (fused_dir / LABELS_FILE).write_text(label_text)
        _write_marker(root, spec, ENSEMBLE_NAME, model_file)
        return root

    preprocess_dir = root / PREPROCESS_NAME
    _write_config(preprocess_dir, preprocess_config(spec))
    preprocess_source = {"seed": "seed_preprocess"}.get(
        spec.profile, "preprocess_gpu" if spec.device == "cuda" else "preprocess"
    )
    (preprocess_dir / "1" / "model.py").write_text(_model_source(preprocess_source))

    name, file_name, _ = CLASSIFIERS[spec.classifier]
    classifier_dir = root / name
    _write_config(classifier_dir, classifier_config(spec))
    _install_file(model_file, classifier_dir / "1" / file_name)
    (classifier_dir / LABELS_FILE).write_text(label_text)
    if spec.classifier in ("ort", "torch"):
        (classifier_dir / "1" / "model.py").write_text(_model_source(f"classifier_{spec.classifier}"))

    ensemble_dir = root / ENSEMBLE_NAME
    _write_config(ensemble_dir, ensemble_config(spec))
    (ensemble_dir / LABELS_FILE).write_text(label_text)

    _write_marker(root, spec, name, model_file)
    return root


def _write_marker(root: Path, spec: RepositorySpec, classifier: str, model_file: Path) -> None:
    marker = {"written_by": "resnet-serve", "profile": spec.profile, "classifier": classifier}
    marker.update(model_file=str(model_file.resolve()), gpu_tensors=spec.passes_gpu_tensors)
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def read_marker(root: Path | str) -> dict:
    """What resnet-serve recorded about a repository it wrote ({} for any other directory)."""
    try:
        return json.loads((Path(root) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return {}


def stale_model_files(root: Path | str) -> list[str]:
    """The model.py files of a repository we wrote that no longer match this resnet-serve's models.

    A repository holds copies of ``triton_models/*.py`` that import this package: after an upgrade
    they can call functions that changed, so they must be written again.
    """
    root = Path(root)
    if not read_marker(root):
        return []
    models = resources.files("resnet_serve.triton_models")
    current = {entry.read_text() for entry in models.iterdir() if entry.name.endswith(".py")}
    return sorted(str(path.relative_to(root)) for path in root.glob("*/*/model.py") if path.read_text() not in current)


def read_config(path: Path | str) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` back into a ModelConfig."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
