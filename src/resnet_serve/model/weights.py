"""Where a classifier's weights come from, and how torchvision says its input is prepared.

Any torchvision classification architecture (``--arch``, resnet50 by default). In order:
``--weights FILE`` (or ``RESNET_SERVE_WEIGHTS``), else torchvision's own pretrained weights from its
cache or a download (for resnet50 ``IMAGENET1K_V1``, what the seed's ``pretrained=True`` means; for
the others their ``DEFAULT``). A fixed-seed random model only when asked for: its classes are
meaningless. Each loaded model comes with its :class:`~resnet_serve.model_card.ModelCard`, whose
preprocessing is the architecture's pretrained weights' ``transforms()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torchvision.models
from torchvision.models import get_model, get_model_weights, list_models

from resnet_serve.contract import NUM_CLASSES
from resnet_serve.errors import ResnetServeError, not_a_file
from resnet_serve.model_card import DEFAULT_ARCH, ModelCard

RANDOM_SEED = 0
WEIGHTS_ENV = "RESNET_SERVE_WEIGHTS"
# The seed's `pretrained=True`; torchvision's DEFAULT for resnet50 is V2 (another resize: 232).
SEED_WEIGHTS = {"resnet50": "IMAGENET1K_V1"}


class WeightsError(ResnetServeError):
    """Weights could not be loaded; the message says what to do."""


@dataclass
class LoadedModel:
    """A classifier in eval mode, a description of its weights and its model card."""

    model: torch.nn.Module
    source: str
    meaningful: bool  # False for random weights: class names then mean nothing
    card: ModelCard


@cache
def architectures() -> tuple[str, ...]:
    """torchvision's image classification models (not its detection or video ones)."""
    return tuple(list_models(module=torchvision.models))


def check_arch(arch: str) -> str:
    """``arch`` when torchvision has it as a classification model; else a one-line error."""
    if arch not in architectures():
        close = [name for name in architectures() if name.startswith(arch[:5])] or ["resnet50", "efficientnet_b0"]
        raise WeightsError(
            f"unknown architecture {arch!r}: not one of torchvision's {len(architectures())} classification models "
            f"(e.g. {', '.join(close[:6])}); or export your model to ONNX yourself and pass --onnx FILE"
        )
    return arch


def pretrained_weights(arch: str):
    """torchvision's pretrained weights of ``arch`` (an enum member; its download may not be there)."""
    enum = get_model_weights(check_arch(arch))
    return enum[SEED_WEIGHTS[arch]] if arch in SEED_WEIGHTS else enum.DEFAULT


def eval_card(arch: str, *, num_classes: int = NUM_CLASSES, labels: Sequence[str] = (), source: str) -> ModelCard:
    """The card of ``arch``: input size and preprocessing from its pretrained weights' ``transforms()``."""
    transforms = pretrained_weights(arch).transforms()
    (crop,), (resize,) = transforms.crop_size, transforms.resize_size
    return ModelCard(
        arch=arch,
        num_classes=num_classes,
        input_size=crop,
        resize=resize,
        interpolation=transforms.interpolation.value,
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        labels=tuple(labels),
        weights=source,
    )


def build_model(arch: str, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """``arch`` with torchvision's initialisation and ``num_classes`` outputs, in eval mode."""
    return get_model(check_arch(arch), weights=None, num_classes=num_classes).eval()


def random_model(
    arch: str = DEFAULT_ARCH, num_classes: int = NUM_CLASSES, labels: Sequence[str] = (), seed: int = RANDOM_SEED
) -> LoadedModel:
    """``arch`` initialised under a fixed seed (the same weights every time)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(arch, num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
    source = f"random weights (seed {seed})"
    return LoadedModel(model, source, False, eval_card(arch, num_classes=num_classes, labels=labels, source=source))


def random_resnet50(seed: int = RANDOM_SEED) -> LoadedModel:
    """The fixed-seed random ResNet-50 the tests and benchmarks serve."""
    return random_model(seed=seed)


def _state_dict_from(checkpoint: object, path: Path) -> dict:
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
        state = {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
        if state:
            return state
    raise WeightsError(f"{path} holds no state_dict (a dict of tensors, or one under 'state_dict'/'model')")


def misfit(model: torch.nn.Module, state: dict, arch: str, num_classes: int) -> str | None:
    """Why ``state`` does not fit ``model`` (one line, with the option that fixes it), or None.

    Only the classifier head differing (its output dimension) means another number of classes;
    anything else, another architecture.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [(key, list(state[key].shape), list(want.shape)) for key, want in expected.items()
              if key in state and want.shape != state[key].shape]  # fmt: skip
    head = all(want[0] == num_classes and got[1:] == want[1:] for _, got, want in shapes)
    if shapes and head and not missing and not unexpected:
        key, got, want = shapes[0]
        return f"{key} is {got} in the file, {want} in {arch}: pass --num-classes {got[0]} (and --labels FILE)"
    if shapes or missing or unexpected:
        parts = [f"{key} is {got} in the file, {want} in {arch}" for key, got, want in shapes[:1]]
        parts += [f"{len(missing)} tensors missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unknown (e.g. {unexpected[0]})"] if unexpected else []
        return f"{'; '.join(parts)}: is it a {arch} checkpoint? pass --arch NAME"
    return None


def load_weights_file(
    path: Path | str, arch: str = DEFAULT_ARCH, num_classes: int = NUM_CLASSES, labels: Sequence[str] = ()
) -> LoadedModel:
    """``arch`` with ``num_classes`` outputs from a state_dict or torchvision-style checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(not_a_file("weights file", path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a PyTorch weights file ({exc.__class__.__name__}: {exc})") from None
    state = _state_dict_from(checkpoint, path)
    model = build_model(arch, num_classes)
    if why := misfit(model, state, arch, num_classes):
        raise WeightsError(f"{path} does not fit {arch} with {num_classes} classes: {why}")
    model.load_state_dict(state)
    source = f"weights file {path}"
    return LoadedModel(model, source, True, eval_card(arch, num_classes=num_classes, labels=labels, source=source))


def pretrained_cached(arch: str = DEFAULT_ARCH) -> Path | None:
    """The torchvision cache file of ``arch``'s pretrained weights, if already downloaded."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pretrained_weights(arch).url)
    return path if path.is_file() else None


def load_pretrained(
    arch: str = DEFAULT_ARCH, num_classes: int = NUM_CLASSES, labels: Sequence[str] = ()
) -> LoadedModel:
    """torchvision's pretrained weights of ``arch``, from its cache or downloaded (needs the internet once)."""
    weights = pretrained_weights(arch)
    classes = len(weights.meta["categories"])
    if num_classes != classes:
        raise WeightsError(
            f"torchvision's {weights} has {classes} classes, not {num_classes}: pass --weights FILE with your "
            f"fine-tuned {arch}"
        )
    try:
        model = get_model(arch, weights=weights, progress=True).eval()
    except Exception as exc:  # URLError, socket errors, hash mismatch...
        raise WeightsError(
            f"could not get torchvision's {weights} weights ({exc.__class__.__name__}: {exc}). "
            f"Pass --weights FILE (or set {WEIGHTS_ENV}), or --random-weights for meaningless classes."
        ) from None
    source = f"torchvision {weights}"
    return LoadedModel(model, source, True, eval_card(arch, num_classes=num_classes, labels=labels, source=source))


def load_model(
    arch: str = DEFAULT_ARCH,
    *,
    num_classes: int = NUM_CLASSES,
    labels: Sequence[str] = (),
    weights: Path | str | None = None,
    random: bool = False,
) -> LoadedModel:
    """Pick the weights: random when asked, else a file (argument or env), else torchvision's pretrained."""
    if random:
        return random_model(arch, num_classes, labels)
    weights = weights or os.environ.get(WEIGHTS_ENV)
    if weights:
        return load_weights_file(weights, arch, num_classes, labels)
    return load_pretrained(arch, num_classes, labels)
