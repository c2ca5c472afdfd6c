"""torchvision's ImageNet eval transform: the reference our preprocessing is measured against
(tests and benchmarks; needs the `export` extra)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from resnet_serve.contract import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_SIZE


def eval_transform():
    """Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize, as torchvision's ResNet-50 weights."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(RESIZE_SIZE),
            transforms.CenterCrop(IMAGE_SIZE),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def reference_tensor(data: bytes) -> np.ndarray:
    """One encoded image through torchvision's eval transform (RGB conversion as torchvision's loader)."""
    return eval_transform()(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
