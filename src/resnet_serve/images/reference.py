"""torchvision's eval transform: the reference our preprocessing is measured against (tests and
benchmarks; needs the `export` extra)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from resnet_serve.model_card import ModelCard


def eval_transform(card: ModelCard | None = None):
    """Resize -> CenterCrop -> ToTensor -> Normalize with the card's values (default: the seed's
    ResNet-50, 256/224 bilinear), as torchvision's ``weights.transforms()`` computes them on a PIL image."""
    from torchvision import transforms

    card = card or ModelCard()
    return transforms.Compose(
        [
            transforms.Resize(card.resize, interpolation=transforms.InterpolationMode(card.interpolation)),
            transforms.CenterCrop(card.input_size),
            transforms.ToTensor(),
            transforms.Normalize(card.mean, card.std),
        ]
    )


def reference_tensor(data: bytes, card: ModelCard | None = None) -> np.ndarray:
    """One encoded image through torchvision's eval transform (RGB conversion as torchvision's loader)."""
    return eval_transform(card)(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
