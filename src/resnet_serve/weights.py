"""Where the ResNet-50 weights come from.

In order: ``--weights FILE`` (or ``RESNET_SERVE_WEIGHTS``), else torchvision's
``ResNet50_Weights.IMAGENET1K_V1`` (what the seed's ``pretrained=True`` means) from torchvision's
cache or a download. A fixed-seed random ResNet-50 only when asked for: its classes are meaningless.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import ResNet50_Weights, resnet50

from resnet_serve.errors import ResnetServeError

RANDOM_SEED = 0
WEIGHTS_ENV = "RESNET_SERVE_WEIGHTS"
IMAGENET_WEIGHTS = ResNet50_Weights.IMAGENET1K_V1


class WeightsError(ResnetServeError):
    """Weights could not be loaded; the message says what to do."""


@dataclass
class LoadedModel:
    """A ResNet-50 in eval mode and a description of its weights."""

    model: torch.nn.Module
    source: str
    meaningful: bool  # False for random weights: class names then mean nothing


def random_resnet50(seed: int = RANDOM_SEED) -> LoadedModel:
    """A ResNet-50 with torchvision's initialisation under a fixed seed (same weights every time)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = resnet50(weights=None)
    finally:
        torch.random.set_rng_state(generator_state)
    return LoadedModel(model.eval(), f"random weights (seed {seed})", meaningful=False)


def _state_dict_from(checkpoint: object, path: Path) -> dict:
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
        state = {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
        if state:
            return state
    raise WeightsError(f"{path} holds no ResNet-50 state_dict (a dict of tensors, or one under 'state_dict'/'model')")


def load_weights_file(path: Path | str) -> LoadedModel:
    """A ResNet-50 from a state_dict or torchvision-style checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a PyTorch weights file ({exc.__class__.__name__}: {exc})") from None
    model = resnet50(weights=None)
    try:
        model.load_state_dict(_state_dict_from(checkpoint, path))
    except RuntimeError as exc:
        first_lines = "\n".join(str(exc).splitlines()[:4])
        raise WeightsError(f"{path} does not fit torchvision's ResNet-50:\n{first_lines}") from None
    return LoadedModel(model.eval(), f"weights file {path}", meaningful=True)


def imagenet_weights_cached() -> Path | None:
    """The torchvision cache file of IMAGENET1K_V1, if already downloaded."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(IMAGENET_WEIGHTS.url)
    return path if path.is_file() else None


def load_imagenet() -> LoadedModel:
    """torchvision's IMAGENET1K_V1 weights, from its cache or downloaded (needs the internet once)."""
    try:
        model = resnet50(weights=IMAGENET_WEIGHTS, progress=True)
    except Exception as exc:  # URLError, socket errors, hash mismatch...
        raise WeightsError(
            f"could not get torchvision's {IMAGENET_WEIGHTS} weights ({exc.__class__.__name__}: {exc}). "
            f"Pass --weights FILE (or set {WEIGHTS_ENV}), or --random-weights for meaningless classes."
        ) from None
    return LoadedModel(model.eval(), f"torchvision {IMAGENET_WEIGHTS}", meaningful=True)


def load_resnet50(weights: Path | str | None = None, random: bool = False) -> LoadedModel:
    """Pick the weights: random when asked, else a file (argument or env), else ImageNet."""
    if random:
        return random_resnet50()
    weights = weights or os.environ.get(WEIGHTS_ENV)
    return load_weights_file(weights) if weights else load_imagenet()
