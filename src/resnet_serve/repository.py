"""Writes the Triton model repository: preprocess -> classifier, as the seed's ensemble.

Configs are ``model_config_pb2.ModelConfig`` messages written with protobuf's ``text_format``; the
names come from :mod:`resnet_serve.contract`, so the ensemble keeps the seed's contract, and what
the model needs (input size, preprocessing, classes, labels) from its card
(:mod:`resnet_serve.model_card`). A repository is a snapshot: its model files are copies, so
exporting again never changes what a repository already written serves.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from resnet_serve.contract import (
    CLASSIFIER_INPUT,
    CLASSIFIER_OUTPUT,
    ENSEMBLE_INPUT,
    ENSEMBLE_LENGTHS,
    ENSEMBLE_NAME,
    ENSEMBLE_OUTPUT,
    IMAGE_SIZE,
    LABELS_FILE,
    MAX_BATCH_SIZE,
    PREPROCESS_INPUT,
    PREPROCESS_LENGTHS,
    PREPROCESS_NAME,
    PREPROCESS_OUTPUT,
    PREPROCESSED_TENSOR,
)
from resnet_serve.errors import ResnetServeError, not_a_file
from resnet_serve.gpu_placement import (
    GIB_PER_IMAGE_INSTANCE,
    gpu_memory_gib,
    gpus_in_use,
    group_name,
    image_instances_for,
    parse_gpus,
)
from resnet_serve.images.gpu_decode import DECODERS, GpuDecoder
from resnet_serve.images.preprocess import PreprocessOptions
from resnet_serve.model_card import ModelCard, card_for, check_model_shapes, file_sha256
from resnet_serve.openvino_classifier import Precision
from resnet_serve.options import option
from resnet_serve.run_batches import DEFAULT_MAX_RUN_BATCH
from resnet_serve.runtimes import RUNTIMES, set_parameters

MARKER_FILE = ".resnet_serve.json"
MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # a directory name Triton and URLs take as is

Profile = Literal["auto", "ours", "seed", "fused"]
ClassifierKind = Literal["openvino", "openvino_native", "ort", "onnx", "trt", "torch"]
Device = Literal["cpu", "cuda"]
Dtype = Literal["fp16", "fp32"]
Compiler = Literal["none", "aoti"]
COMPILERS: tuple[Compiler, ...] = ("none", "aoti")

PROFILES: dict[str, str] = {
    "auto": "fused for the GPU's torch classifier, else ours: the fastest measured on each",
    "ours": "batched, ragged, aspect-preserving preprocess (the product)",
    "seed": "the seed example exactly: squash resize, transforms per request, no dynamic batching (a baseline)",
    "fused": "preprocess + classifier in ONE Python model named as the ensemble (one hop, one process): the torch "
    "classifier on the GPU, OpenVINO on the CPU",
}


# Instances per GPU of the model that takes the encoded images (preprocess, or the fused model). Why:
# its per-request Python work and nvJPEG's CPU-side decoding leave the GPU idle between executions;
# several instances (processes) overlap them, and under the MPS daemon that serve starts for them
# (server/mps.py) they run on the GPU at once. One H100, fused, 500x375 JPEG, 8 images/request, best
# img/s, one run: 8 instances with MPS 10,350; without MPS 8 instances 7,360 and 4 instances 7,936
# (another run, with MPS: 4 / 6 / 8 instances 8,312 / 9,714 / 10,304; benchmarks/RESULTS.md). Where
# MPS cannot run, 4 serve more than 8; and each instance holds GPU memory, so GPUs with less take
# fewer (gpu_placement.image_instances_for).
GPU_IMAGE_INSTANCES = 8
# Instances of the CPU preprocess model. Two, so that an image that takes long to decode within the
# limits holds one while the other serves: 2-core VM, 2 clients of one 500x375 JPEG each beside one
# client sending 24-megapixel progressive JPEGs, two runs (benchmarks/RESULTS.md, issue 28): good
# img/s 5.3-6.2 with one instance, 33-36 with two; p99 838-910 ms against 111-127 ms. Without the
# stream, two served 0.89-0.92x of one (55-59 img/s against 60-66).
CPU_IMAGE_INSTANCES = 2


def fused_is_default(device: str, classifier: str) -> bool:
    """Whether ``auto`` means the fused profile: for the GPU's torch classifier, which served as fast as two
    steps or faster at every load measured on one H200 (one lease, 512 in flight: 1 image/request 8,018
    img/s against 3,603; 8 images/request 13,642 against 9,933 with the two-step's 4 GiB pool; issue 30
    found 32 images/request equal; benchmarks/RESULTS.md, stop 37). Not for OpenVINO on the CPU: faster on 2
    cores and at low load, but 0.91x the two steps for ResNet-50 at 64 in flight on 16 (RESULTS.md, stop 39)."""
    return device == "cuda" and classifier == "torch"


# The lowest value of each number a repository is written with (Triton's config holds 32-bit integers).
_LOWEST = {"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 0, "max_queue_wait_ms": 0,
           "preprocess_instances": 0, "preprocess_threads": 0, "classifier_instances": 1, "classifier_threads": 0,
           "classifier_run_batch": 1, "max_image_bytes": 1, "max_request_bytes": 1, "max_pixels": 1,
           "max_request_pixels": 1, "max_request_decode_ms": 0}  # fmt: skip
_INT32_MAX = 2**31 - 1


class RepositoryError(ResnetServeError):
    """The repository cannot be written as asked."""


def check_model_name(name: str) -> None:
    """Refuse a model (or step) name that is not a plain directory name Triton and URLs take as is."""
    if not MODEL_NAME.fullmatch(name):
        raise RepositoryError(f"a model name is letters, digits, '_', '-' and '.' (not first), got {name!r}")


@dataclass(frozen=True, kw_only=True)
class RepositorySpec:
    """What goes into the repository; fields declared with ``option`` are also CLI options."""

    model_file: Path
    name: str = option(
        ENSEMBLE_NAME,
        "model name clients call; a name of your own adds the model beside those already in the repository "
        "(its steps are named <name>_preprocess, <name>_<runtime>, e.g. <name>_openvino)",
    )
    card: ModelCard | None = None  # what the model needs; None: the card beside model_file (model_card.card_for)
    classifier: ClassifierKind = "ort"
    profile: Profile = "auto"  # as asked; what is written: served_profile
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    device: Device = option("cpu", "cuda: nvJPEG preprocess and the PyTorch classifier on the GPU, tensors by DLPack")
    dtype: Dtype = option("fp16", "GPU classifier precision (and the GPU preprocess output)")
    cuda_graphs: bool = option(True, "run the GPU classifier eagerly, without CUDA graphs")
    deterministic: bool = option(
        True, "let cuDNN time its kernels at load: each GPU instance may answer an image in other last bits"
    )
    compiler: Compiler = option(
        "none",
        "compile the GPU classifier ahead of time on this machine's GPU: aoti = AOTInductor, minutes once, "
        "then every instance loads it (none: CUDA graphs of the eager model)",
    )
    gpus: str = option("", "GPUs to serve on, e.g. 0,1, one pipeline each (empty: every visible GPU)")
    gpu_decoder: GpuDecoder = option(
        "auto", "GPU JPEG decoder (auto: nvImageCodec for images of 2+ MP where installed, else torchvision)"
    )
    max_batch_size: int = option(MAX_BATCH_SIZE, "most images in one request (and one batch)")
    max_queue_delay_us: int = option(1000, "dynamic batcher wait, in microseconds")
    max_queue_size: int = option(1024, "requests waiting for the first step before new ones are refused")
    max_queue_wait_ms: int = option(
        30_000,
        "most milliseconds a request waits for the first step, then refused as UNAVAILABLE (0: no limit); "
        "a request's own shorter timeout, as our clients send, applies instead",
    )
    preprocess_instances: int = option(
        0,
        f"instances of the model taking the images, per device (0: {CPU_IMAGE_INSTANCES} on the CPU; "
        f"{GPU_IMAGE_INSTANCES} per GPU, "
        f"fewer on GPUs under {GPU_IMAGE_INSTANCES * GIB_PER_IMAGE_INSTANCE:.0f} GiB)",
    )
    preprocess_threads: int = option(0, "decode threads per preprocess instance (0: all cores)")
    classifier_instances: int = option(1, "classifier model instances")
    classifier_threads: int = option(
        0, "classifier threads (0: all cores; the Python-backend OpenVINO one on 8+ cores: 3/4 for batches of 4+)"
    )
    classifier_run_batch: int = option(
        DEFAULT_MAX_RUN_BATCH, "images per classifier call (ONNX Runtime, OpenVINO), bounding its memory"
    )
    precision: Precision = option(
        "auto", "CPU classifier precision: auto = bf16 where the CPU has avx512_bf16 or AMX (OpenVINO), else fp32"
    )

    def __post_init__(self) -> None:
        choosing = (("profile", PROFILES), ("classifier", RUNTIMES), ("device", ("cpu", "cuda")),
                    ("gpu_decoder", DECODERS), ("compiler", COMPILERS))  # fmt: skip
        for name, choices in choosing:
            if getattr(self, name) not in choices:
                raise RepositoryError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        for name, low in _LOWEST.items():
            value = getattr(self.preprocess if hasattr(self.preprocess, name) else self, name)
            if not low <= value <= _INT32_MAX:
                meaning = " (0: auto, or no limit)" if low == 0 else ""
                raise RepositoryError(f"{name} must be from {low} to {_INT32_MAX}{meaning}, got {value}")
        try:
            parse_gpus(self.gpus) if self.gpus else ()
        except ValueError as exc:
            raise RepositoryError(str(exc)) from None
        if self.served_profile == "fused" and RUNTIMES[self.classifier].fused_source is None:
            fused = " or ".join(kind for kind, runtime in RUNTIMES.items() if runtime.fused_source)
            raise RepositoryError(f"the fused profile runs the {fused} classifier, not {self.classifier}")
        if self.compiler != "none" and (self.classifier != "torch" or self.served_profile == "seed"):
            raise RepositoryError(f"--compiler {self.compiler} compiles the GPU classifier of the fused and ours "
                                  f"profiles (--device cuda), not the {self.classifier} one of the "
                                  f"{self.served_profile} profile")  # fmt: skip
        check_model_name(self.name)

    @property
    def served_profile(self) -> str:
        """``profile``, with ``auto`` worked out from the device and classifier (fused_is_default), so a
        spec ``replace``d onto another device or classifier works it out again."""
        if self.profile != "auto":
            return self.profile
        return "fused" if fused_is_default(self.device, self.classifier) else "ours"

    @property
    def model_card(self) -> ModelCard:
        """The card of the model served: ``card``, else the one beside the model file."""
        return self.card or card_for(self.model_file)

    def step_name(self, default: str, own: str) -> str:
        """A step model's name: the seed's (``default``) for the default model, else ``<name>_<own>``."""
        return default if self.name == ENSEMBLE_NAME else f"{self.name}_{own}"

    @property
    def preprocess_name(self) -> str:
        return self.step_name(PREPROCESS_NAME, PREPROCESS_NAME)

    @property
    def classifier_name(self) -> str:
        """``<arch>_<runtime>`` in the default model (resnet50_openvino, as the seed's resnet50_trt;
        efficientnet_b0_openvino), else ``<name>_<runtime>``."""
        step = RUNTIMES[self.classifier].step
        return self.step_name(f"{self.model_card.arch}_{step}", step)

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        """The GPUs the repository serves on: ``gpus``, or every visible GPU (gpu_placement)."""
        return gpus_in_use(parse_gpus(self.gpus) if self.gpus else ())

    @property
    def image_instances(self) -> int:
        """Instances (per GPU on the GPU) of the model that takes the encoded images."""
        if self.preprocess_instances:
            return self.preprocess_instances
        if self.device == "cuda":
            return image_instances_for(gpu_memory_gib(), GPU_IMAGE_INSTANCES)
        return CPU_IMAGE_INSTANCES

    @property
    def passes_gpu_tensors(self) -> bool:
        """True when the preprocess step hands GPU tensors to the classifier (the server needs a CUDA pool)."""
        return self.device == "cuda" and self.served_profile == "ours"

    @property
    def image_tensor_type(self) -> int:
        """The type of the preprocessed images passed between the steps."""
        fp16 = self.classifier == "torch" and self.dtype == "fp16" and self.served_profile == "ours"
        return mc.TYPE_FP16 if fp16 else mc.TYPE_FP32


def _batch_and_guard_images(config: mc.ModelConfig, spec: RepositorySpec) -> None:
    """For a model taking encoded images: dynamic batching, a bounded queue, the preprocess options."""
    config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size = spec.max_queue_size
    # Work for a client that has gone stops here: Triton passes a gRPC cancel between the ensemble's
    # steps only (a step's own request never reads as cancelled: tried on 2.51), but a request's
    # timeout reaches the step's queue, which refuses what waited longer (UNAVAILABLE, retryable);
    # a request may shorten the repository's wait, not lengthen it.
    policy.timeout_action = mc.ModelQueuePolicy.REJECT
    policy.default_timeout_microseconds = spec.max_queue_wait_ms * 1000
    policy.allow_timeout_override = True
    set_parameters(config, spec.preprocess.to_parameters())


def _image_dims(spec: RepositorySpec) -> list[int]:
    return [3, spec.preprocess.crop, spec.preprocess.crop]


def preprocess_config(spec: RepositorySpec) -> mc.ModelConfig:
    """Python-backend preprocess: UINT8 [-1] (ragged, so images of any size batch together)."""
    config = mc.ModelConfig(name=spec.preprocess_name, backend="python", max_batch_size=spec.max_batch_size)
    seed = spec.served_profile == "seed"
    config.input.add(name=PREPROCESS_INPUT, data_type=mc.TYPE_UINT8, dims=[-1], allow_ragged_batch=not seed)
    config.input.add(name=PREPROCESS_LENGTHS, data_type=mc.TYPE_INT64, dims=[1], optional=True)
    config.output.add(name=PREPROCESS_OUTPUT, data_type=spec.image_tensor_type, dims=_image_dims(spec))
    if seed:
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
        return config
    _take_images(config, spec)
    if spec.device == "cuda":
        set_parameters(config, {"dtype": "fp16" if spec.image_tensor_type == mc.TYPE_FP16 else "fp32"})
    return config


def _take_images(config: mc.ModelConfig, spec: RepositorySpec) -> None:
    """What the model that decodes (preprocess, or the fused model) has whatever its profile: its instances
    (a Python model with UINT8 input runs in KIND_CPU instance groups: per GPU on the GPU), batching and
    limits, its decode threads and GPU decoder."""
    if spec.device == "cuda":
        for gpu in spec.gpu_ids:  # one group per GPU, named for it (gpu_placement)
            config.instance_group.add(name=group_name(gpu), kind=mc.ModelInstanceGroup.KIND_CPU,
                                      count=spec.image_instances)  # fmt: skip
        set_parameters(config, {"gpu_decoder": spec.gpu_decoder})
    else:
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.image_instances)
    _batch_and_guard_images(config, spec)
    set_parameters(config, {"threads": spec.preprocess_threads})


def classifier_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The classifier step: its runtime's part (runtimes/), then ``input`` [3, S, S] (FP32, or FP16
    for the fp16 torch classifier) -> ``output`` FP32 [classes] with labels."""
    config = mc.ModelConfig(name=spec.classifier_name, max_batch_size=spec.max_batch_size)
    RUNTIMES[spec.classifier].configure(config, spec)
    config.input.add(name=CLASSIFIER_INPUT, data_type=spec.image_tensor_type, dims=_image_dims(spec))
    config.output.add(name=CLASSIFIER_OUTPUT, data_type=mc.TYPE_FP32, dims=[spec.model_card.num_classes],
                      label_filename=LABELS_FILE)  # fmt: skip
    if spec.served_profile != "seed":
        config.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    return config


def _ensemble_io(config: mc.ModelConfig, spec: RepositorySpec, *, ragged: bool = False) -> None:
    config.input.add(name=ENSEMBLE_INPUT, data_type=mc.TYPE_UINT8, dims=[-1], allow_ragged_batch=ragged)
    config.input.add(name=ENSEMBLE_LENGTHS, data_type=mc.TYPE_INT64, dims=[1], optional=True)
    config.output.add(name=ENSEMBLE_OUTPUT, data_type=mc.TYPE_FP32, dims=[spec.model_card.num_classes],
                      label_filename=LABELS_FILE)  # fmt: skip


def ensemble_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The seed's ensemble: ``INPUT`` -> preprocess -> classifier -> ``OUTPUT``."""
    config = mc.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=spec.max_batch_size)
    _ensemble_io(config, spec)
    steps = config.ensemble_scheduling.step
    steps.add(
        model_name=spec.preprocess_name,
        model_version=-1,
        input_map={PREPROCESS_INPUT: ENSEMBLE_INPUT, PREPROCESS_LENGTHS: ENSEMBLE_LENGTHS},
        output_map={PREPROCESS_OUTPUT: PREPROCESSED_TENSOR},
    )
    steps.add(
        model_name=spec.classifier_name,
        model_version=-1,
        input_map={CLASSIFIER_INPUT: PREPROCESSED_TENSOR},
        output_map={CLASSIFIER_OUTPUT: ENSEMBLE_OUTPUT},
    )
    return config


def fused_config(spec: RepositorySpec) -> mc.ModelConfig:
    """The fused profile: one Python model with the ensemble's name, input and output, that decodes and
    classifies (the runtime's ``fused_source``: triton_models/fused_cpu.py or fused_gpu.py)."""
    config = mc.ModelConfig(name=spec.name, backend="python", max_batch_size=spec.max_batch_size)
    _ensemble_io(config, spec, ragged=True)
    _take_images(config, spec)
    set_parameters(config, RUNTIMES[spec.classifier].fused_parameters(spec))
    return config


def _write_config(model_dir: Path, config: mc.ModelConfig) -> None:
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))


def _install_file(source: Path, target: Path) -> None:
    """A copy, never a hard link: a link would make the repository change when the model file is
    written again in place (ResNet-50's ONNX file, ~100 MB, copies in ~0.1 s)."""
    shutil.copyfile(source, target)


def _model_source(name: str) -> str:
    return resources.files("resnet_serve.triton_models").joinpath(f"{name}.py").read_text()


def _other_models(root: Path, name: str) -> dict[str, str]:
    """The directories of the models other than ``name`` that resnet-serve wrote in ``root``, and whose each is."""
    return {directory: other for other, entry in read_markers(root).items() if other != name
            for directory in entry.get("directories", [])}  # fmt: skip


def prepare_directory(root: Path, name: str = ENSEMBLE_NAME) -> None:
    """Make ``root`` ready to hold model ``name``: remove everything but the other models resnet-serve
    wrote there (and its marker); refuse a non-empty directory we did not write."""
    if root.exists() and any(root.iterdir()) and not (root / MARKER_FILE).exists():
        raise RepositoryError(f"{root} is not empty and was not written by resnet-serve; choose another directory")
    kept = _other_models(root, name)
    if root.exists():
        for child in root.iterdir():
            if child.name in kept or child.name == MARKER_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _check_free(root: Path, spec: RepositorySpec, directories: Sequence[str]) -> None:
    """Refuse a model whose directories another model of the repository already has."""
    taken = _other_models(root, spec.name)
    for directory in directories:
        if directory in taken:
            raise RepositoryError(f"model {taken[directory]} in {root} already has {directory}: choose another --name")


def _write_model(root: Path, config: mc.ModelConfig, source: str | None = None, labels: Sequence[str] = ()) -> Path:
    """One model's directory: its config, its model.py (from ``triton_models/<source>.py``), and the
    labels file its outputs name, if any."""
    model_dir = root / config.name
    _write_config(model_dir, config)
    if source:
        (model_dir / "1" / "model.py").write_text(_model_source(source))
    if any(output.label_filename for output in config.output):
        (model_dir / LABELS_FILE).write_text("\n".join(labels) + "\n")
    return model_dir


def write_repository(root: Path | str, spec: RepositorySpec) -> Path:
    """Write (or rewrite) model ``spec.name`` in the repository under ``root`` and return its path;
    the other models resnet-serve wrote there stay."""
    root = Path(root)
    model_file = Path(spec.model_file)
    if not model_file.is_file():
        raise RepositoryError(not_a_file("model file", model_file))
    card, runtime = spec.model_card, RUNTIMES[spec.classifier]
    if runtime.reads_onnx:
        check_model_shapes(model_file, card)
    if spec.served_profile == "seed" and card.input_size != IMAGE_SIZE:
        raise RepositoryError(f"the seed profile squashes images to {IMAGE_SIZE} px, as the example; this model "
                              f"takes {card.input_size}: use --profile ours")  # fmt: skip
    preprocess = replace(spec.preprocess, **card.preprocess_fields())
    spec = replace(spec, card=card, preprocess=preprocess, precision=runtime.precision(spec.precision))
    fused = spec.served_profile == "fused"
    directories = [spec.name] if fused else [spec.preprocess_name, spec.classifier_name, spec.name]
    for name in directories:  # a hand-written card's arch names the classifier step
        check_model_name(name)
    _check_free(root, spec, directories)
    runtime.check_model(model_file, spec.precision)
    names = card.class_labels
    if fused:  # (config, model.py source, labels, holds the model file)
        models = [(fused_config(spec), runtime.fused_source, names, True)]
    else:
        if spec.served_profile == "seed":
            preprocess_source = "seed_preprocess"
        else:
            preprocess_source = "preprocess_gpu" if spec.device == "cuda" else "preprocess"
        models = [(preprocess_config(spec), preprocess_source, (), False),
                  (classifier_config(spec), runtime.source, names, True),
                  (ensemble_config(spec), None, names, False)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="resnet-serve-") as scratch:
        files = [*runtime.files(model_file), *runtime.build(spec, model_file, Path(scratch))]
        # Every check done, every config and file made: only now is the model's old version removed (a
        # value its config refused emptied a working repository, issue 28's review).
        prepare_directory(root, spec.name)
        for config, source, labels, holds_model in models:
            model_dir = _write_model(root, config, source, labels)
            for source_file, name in files if holds_model else ():
                _install_file(source_file, model_dir / "1" / name)
    _write_marker(root, spec, spec.name if fused else spec.classifier_name, model_file, directories)
    return root


def _write_marker(root: Path, spec: RepositorySpec, classifier: str, model_file: Path, directories: list[str]) -> None:
    """Record model ``spec.name`` in the repository's marker, beside the others."""
    card = spec.model_card
    entry = {"profile": spec.served_profile, "classifier": classifier, "directories": directories}
    entry.update(model_file=str(model_file.resolve()), gpu_tensors=spec.passes_gpu_tensors)
    entry["model"] = {"summary": card.summary(), "weights": card.weights, "sha256": file_sha256(model_file)}
    if spec.device == "cuda":
        entry["gpus"] = list(spec.gpu_ids)  # serve gives each the CUDA memory pool
        if spec.compiler == "aoti":
            from resnet_serve.aoti import NOTE_FILE  # (torch: only where it compiled)

            note = json.loads((root / classifier / "1" / NOTE_FILE).read_text())
            entry["compiled"] = f"AOTInductor for {note['target']}"  # serve prints it with the model
    else:
        entry.update(precision=spec.precision)  # what the CPU classifier runs, resolved (serve prints it)
    models = {**read_markers(root), spec.name: entry}
    _save_markers(root, models)


def _save_markers(root: Path, models: dict[str, dict]) -> None:
    marker = {"written_by": "resnet-serve", "models": models}
    (Path(root) / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def model_description(marker: dict) -> str | None:
    """What a repository's marker says of the model it serves, in one line (None if it says nothing)."""
    model = marker.get("model")
    if not model:
        return None
    compiled = f"; compiled by {marker['compiled']}" if marker.get("compiled") else ""
    return f"{model['summary']}; weights: {model['weights']}; sha256 {model['sha256'][:16]}{compiled}"


def update_marker(root: Path | str, name: str = ENSEMBLE_NAME, **values: object) -> None:
    """Add ``values`` to what the marker records of model ``name`` (e.g. the precision's agreement with fp32)."""
    models = read_markers(root)
    models[name] = {**models.get(name, {}), **values}
    _save_markers(Path(root), models)


def read_markers(root: Path | str) -> dict[str, dict]:
    """What resnet-serve recorded about each model it wrote in a repository, by the name clients
    call ({} for any other directory)."""
    try:
        marker = json.loads((Path(root) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(marker, dict):
        return {}
    return marker.get("models", {ENSEMBLE_NAME: marker})  # a single-model marker of an earlier version


def read_marker(root: Path | str, name: str = ENSEMBLE_NAME) -> dict:
    """What resnet-serve recorded about model ``name`` in a repository ({} when it has none)."""
    return read_markers(root).get(name, {})


def stale_model_files(root: Path | str) -> list[str]:
    """The model.py files of a repository we wrote that no longer match this resnet-serve's models.

    A repository holds copies of ``triton_models/*.py`` that import this package: after an upgrade
    they can call functions that changed, so they must be written again.
    """
    root = Path(root)
    if not read_markers(root):
        return []
    models = resources.files("resnet_serve.triton_models")
    current = {entry.read_text() for entry in models.iterdir() if entry.name.endswith(".py")}
    return sorted(str(path.relative_to(root)) for path in root.glob("*/*/model.py") if path.read_text() not in current)


def require_current_models(root: Path | str) -> None:
    """Refuse to serve a repository whose model.py files another resnet-serve version wrote."""
    if stale := stale_model_files(root):
        raise RepositoryError(
            f"{root} was written by another version of resnet-serve ({stale[0]} differs from this one's); "
            f"write it again with `resnet-serve repo -o {root}`"
        )


def read_config(path: Path | str) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` back into a ModelConfig."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
