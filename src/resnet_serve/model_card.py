"""What a classifier needs to be served, recorded once beside its model file: the model card.

``export`` writes ``<model>.json`` beside ``<model>.onnx`` (and the state_dict ``<model>.pt``): the
architecture, the input size, the eval preprocessing (resize, crop, interpolation, mean, std; taken
from the torchvision weights' own ``transforms()``), the classes and their labels, and where the
weights came from. ``repo`` reads it, so nothing is typed twice. A model file without a card is the
seed's ImageNet ResNet-50 (:func:`imagenet_card`), and is checked to be one.

Pure Python (no torch): the repository writer, the clients and the Triton models import it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from resnet_serve.contract import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, NUM_CLASSES, RESIZE_SIZE, labels
from resnet_serve.errors import ResnetServeError

Interpolation = Literal["bilinear", "bicubic"]  # the resize filters torchvision's weights use
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
DEFAULT_ARCH = "resnet50"
FOREIGN_ARCH = "onnx"  # a model exported elsewhere: its card says how to feed it, not how to build it
MODEL_SUFFIXES = (".onnx", ".xml", ".pt", ".pth", ".plan")
INT8_SUFFIX = ".int8"  # export --int8 writes <stem>.int8.onnx beside <stem>.onnx


class ModelCardError(ResnetServeError):
    """A model card (or what it describes) is not usable; the message says what to do."""


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """One classifier: how to build it, how to feed it, what its outputs mean."""

    arch: str = DEFAULT_ARCH  # a torchvision classification model, or "onnx" for one exported elsewhere
    num_classes: int = NUM_CLASSES
    input_size: int = IMAGE_SIZE  # the square crop the model takes, [N, 3, input_size, input_size]
    resize: int = RESIZE_SIZE  # shorter side before the centre crop
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: tuple[str, ...] = ()  # one per class; empty means the ImageNet labels (1000 classes only)
    weights: str = ""  # where the weights came from, as the exporter described them

    def __post_init__(self) -> None:
        check_preprocessing(self.input_size, self.resize, self.interpolation, self.mean, self.std)
        if self.num_classes < 1:
            raise ModelCardError(f"the number of classes must be 1 or more, got {self.num_classes}")
        if self.labels and len(self.labels) != self.num_classes:
            raise ModelCardError(f"{len(self.labels)} labels for {self.num_classes} classes: give one label per class")
        if not self.labels and self.num_classes != NUM_CLASSES:
            object.__setattr__(self, "labels", numbered_labels(self.num_classes))

    @property
    def class_labels(self) -> tuple[str, ...]:
        """The label of each class, in output order."""
        return self.labels or labels()

    def preprocess_fields(self) -> dict[str, object]:
        """The :class:`resnet_serve.images.preprocess.PreprocessOptions` values that feed this model."""
        return {"resize": self.resize, "crop": self.input_size, "interpolation": self.interpolation,
                "mean": self.mean, "std": self.std}  # fmt: skip

    def summary(self) -> str:
        """One line: what the model is and how it is fed."""
        return (
            f"{self.arch}, {self.num_classes} classes, input {self.input_size}x{self.input_size} "
            f"(resize {self.resize} {self.interpolation})"
        )

    def to_json(self) -> str:
        values = asdict(self)
        if self.labels == labels():
            values["labels"] = []  # the bundled ImageNet labels: not copied into every card
        return json.dumps(values, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "model card") -> ModelCard:
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ModelCardError(f"{where} is not JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ModelCardError(f"{where} must hold a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        for key in ("mean", "std", "labels"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelCardError(f"{where}: {exc}") from None


MAX_SIDE = 4096  # the largest resize (and so input size) a card may ask for
MIN_STD = 1e-3  # smaller would multiply a pixel's noise by 1,000 or more


def check_preprocessing(
    input_size: int, resize: int, interpolation: str, mean: Sequence[float], std: Sequence[float]
) -> None:
    """Refuse preprocessing settings no image could be fed with, saying which one and what it got."""
    if input_size < 1:
        raise ModelCardError(f"the input size must be 1 or more, got {input_size}")
    if resize < input_size:
        raise ModelCardError(f"resize ({resize}) must be at least the input size ({input_size})")
    if interpolation not in INTERPOLATIONS:
        raise ModelCardError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    if resize > MAX_SIDE:
        raise ModelCardError(f"resize must be at most {MAX_SIDE} pixels, got {resize}")
    if len(mean) != 3 or len(std) != 3:
        raise ModelCardError(f"mean and std need 3 values (R, G, B), got {len(mean)} and {len(std)}")
    # On pixels scaled to 0-1, as torchvision's transforms give them: a NaN, or ImageNet's mean on the
    # 0-255 scale (120, 110, 100), was written and served, and every image got the same answer.
    if not all(0 <= value <= 1 for value in mean):
        raise ModelCardError(f"mean values are for pixels scaled to 0-1, so 0 to 1, got {list(mean)}")
    if not all(MIN_STD <= value <= 1 for value in std):
        raise ModelCardError(f"std values are for pixels scaled to 0-1, so {MIN_STD} to 1, got {list(std)}")


def numbered_labels(count: int) -> tuple[str, ...]:
    """Labels for a model given none: ``class 0`` ... ``class N-1``."""
    return tuple(f"class {index}" for index in range(count))


def read_labels(path: Path | str) -> tuple[str, ...]:
    """A labels file: one label per line, in class order (a final empty line is ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelCardError(f"labels file {path} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelCardError(f"labels file {path} is not UTF-8 text") from None
    names = tuple(line.strip() for line in text.splitlines())
    if not names or any(not name for name in names):
        raise ModelCardError(f"labels file {path} needs one non-empty label per line, in class order")
    return names


def card_path(model_file: Path | str) -> Path:
    """Where a model file's card lies: ``resnet50.onnx`` -> ``resnet50.json``; the int8 model
    ``resnet50.int8.onnx`` and the state_dict ``resnet50.pt`` share the fp32 model's card."""
    model_file = Path(model_file)
    stem = model_file.stem if model_file.suffix in MODEL_SUFFIXES else model_file.name
    return model_file.with_name(f"{stem.removesuffix(INT8_SUFFIX)}.json")


def fp32_model_file(int8_model: Path | str) -> Path:
    """The fp32 model that ``export --int8`` quantized into ``int8_model`` (``x.int8.onnx`` -> ``x.onnx``)."""
    int8_model = Path(int8_model)
    return int8_model.with_name(int8_model.name.replace(INT8_SUFFIX + ".", ".", 1))


def write_card(model_file: Path | str, card: ModelCard) -> Path:
    """Write ``card`` beside ``model_file`` (a new file renamed into place: a reader never sees half)."""
    path = card_path(model_file)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(card.to_json())
    partial.replace(path)
    return path


def read_card(model_file: Path | str) -> ModelCard | None:
    """The card beside ``model_file``, or None when it has none."""
    path = card_path(model_file)
    if not path.is_file():
        return None
    return ModelCard.from_json(path.read_text(), f"model card {path}")


def imagenet_card(weights: str = "") -> ModelCard:
    """The seed's model: ImageNet ResNet-50, 256/224 bilinear, the bundled labels."""
    return ModelCard(weights=weights)


def card_for(model_file: Path | str) -> ModelCard:
    """The card beside ``model_file``, else the seed's ImageNet ResNet-50."""
    return read_card(model_file) or imagenet_card(weights=f"unrecorded ({Path(model_file).name} has no card)")


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_model_shapes(model_file: Path | str, card: ModelCard) -> None:
    """Refuse an ONNX file or OpenVINO IR whose input is not [N, 3, S, S] with S the card's input
    size, or whose output is not [N, C] with C the card's classes; one line, naming the file."""
    model_file = Path(model_file)
    got_in, got_out = model_shapes(model_file)
    size = card.input_size
    if len(got_in) != 4 or got_in[1] != 3 or got_in[2] != got_in[3] or got_in[2] not in (size, -1):
        hint = "non-square inputs are not supported" if len(got_in) == 4 and got_in[2] != got_in[3] else ""
        raise ModelCardError(
            f"{model_file} takes input {_shape_text(got_in)}; expected [N, 3, {size}, {size}] (its card's input size)"
            + (f": {hint}" if hint else "")
        )
    if len(got_out) != 2 or got_out[1] != card.num_classes:
        classes = f"{got_out[1]} classes" if len(got_out) == 2 else f"output {_shape_text(got_out)}"
        raise ModelCardError(
            f"{model_file} gives {classes}, but it is described with {card.num_classes}; describe it with "
            f"`resnet-serve export --onnx {model_file} --num-classes N --labels FILE` (and its preprocessing)"
        )


def model_shapes(model_file: Path | str) -> tuple[list[int], list[int]]:
    """The input and output shapes (-1: dynamic) of a one-input, one-output classifier: an ONNX file
    read by ONNX Runtime (graph optimizations off: shapes only), or an OpenVINO IR by OpenVINO."""
    model_file = Path(model_file)
    try:
        inputs, outputs = _ir_shapes(model_file) if model_file.suffix == ".xml" else _onnx_shapes(model_file)
    except Exception as exc:  # both runtimes raise their own types, with multi-line texts
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelCardError(f"{model_file} is not a readable ONNX or OpenVINO model ({first_line})") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelCardError(
            f"{model_file} has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one each"
        )
    return inputs[0], outputs[0]


def _onnx_session(model_file: Path):
    """ONNX Runtime's session of ``model_file``, graph optimizations off: shapes only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def reads_as_onnx(model_file: Path | str) -> bool:
    """Whether ONNX Runtime reads ``model_file`` as a model (whatever its inputs and outputs)."""
    try:
        _onnx_session(Path(model_file))
    except Exception:  # ONNX Runtime's own types, e.g. InvalidProtobuf
        return False
    return True


def _onnx_shapes(model_file: Path) -> tuple[list[list[int]], list[list[int]]]:
    session = _onnx_session(model_file)

    def dims(shape) -> list[int]:
        return [dim if isinstance(dim, int) else -1 for dim in shape]

    return [dims(i.shape) for i in session.get_inputs()], [dims(o.shape) for o in session.get_outputs()]


def _ir_shapes(model_file: Path) -> tuple[list[list[int]], list[list[int]]]:
    import openvino as ov

    model = ov.Core().read_model(str(model_file))
    return [_dims(i.get_partial_shape()) for i in model.inputs], [_dims(o.get_partial_shape()) for o in model.outputs]


def _dims(shape) -> list[int]:
    return [dim.get_length() if dim.is_static else -1 for dim in shape] if shape.rank.is_static else []


def _shape_text(dims: Sequence[int]) -> str:
    return "[" + ", ".join("N" if dim == -1 else str(dim) for dim in dims) + "]"


def describe_onnx(
    model_file: Path | str,
    *,
    num_classes: int | None = None,
    labels: Sequence[str] = (),
    resize: int | None = None,
    interpolation: Interpolation = "bilinear",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ModelCard:
    """The card of a model exported elsewhere: input size and classes read from the file, checked
    against ``num_classes`` and ``labels``; resize defaults to ImageNet's ratio (256 for 224)."""
    got_in, got_out = model_shapes(model_file)
    if len(got_in) != 4 or got_in[1] != 3 or got_in[2] != got_in[3] or got_in[2] < 1:
        raise ModelCardError(
            f"{model_file} takes input {_shape_text(got_in)}; expected [N, 3, S, S] with a fixed S "
            "(export it with a fixed, square image size)"
        )
    if len(got_out) != 2 or got_out[1] < 1:
        raise ModelCardError(f"{model_file} gives output {_shape_text(got_out)}; expected [N, classes]")
    size, classes = got_in[2], got_out[1]
    if num_classes is not None and num_classes != classes:
        raise ModelCardError(f"{model_file} gives {classes} classes, not {num_classes} (--num-classes)")
    if labels and len(labels) != classes:
        raise ModelCardError(f"{len(labels)} labels for the {classes} classes of {model_file}: give one per class")
    return ModelCard(
        arch=FOREIGN_ARCH,
        num_classes=classes,
        input_size=size,
        resize=resize or round(size * RESIZE_SIZE / IMAGE_SIZE),
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
        labels=tuple(labels),
        weights=f"ONNX file {Path(model_file).resolve()}",
    )
