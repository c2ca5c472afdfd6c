"""One dynamically batched execution of image requests: split into images, and back into replies.

Pure functions shared by the Triton models that take encoded images (the CPU and GPU preprocess
models and the fused GPU model): every image is processed once, together, and a request fails alone
with a message naming its bad images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from resnet_serve.preprocess import ImageError, rows_to_bytes


@dataclass
class Gathered:
    """The images of all requests, flattened, and where each request's images lie."""

    images: list[bytes] = field(default_factory=list)
    slices: list[slice] = field(default_factory=list)
    bad_input: dict[int, str] = field(default_factory=dict)  # request index -> why its tensor was refused


def gather_images(
    requests: Sequence, read_input: Callable[[object], np.ndarray], input_name: str, max_request_bytes: int
) -> Gathered:
    """Flatten the UINT8 [N, L] image tensors of ``requests`` (``read_input(request)`` returns one).

    A request whose tensor is larger than ``max_request_bytes`` is refused whole, before any decoding.
    """
    gathered = Gathered()
    for index, request in enumerate(requests):
        try:
            tensor = read_input(request)
            if tensor.nbytes > max_request_bytes:
                raise ImageError(f"request of {tensor.nbytes} bytes exceeds the limit of {max_request_bytes}")
            rows = rows_to_bytes(tensor)
        except ImageError as exc:
            rows = []
            gathered.bad_input[index] = f"{input_name}: {exc}"
        start = len(gathered.images)
        gathered.images.extend(rows)
        gathered.slices.append(slice(start, start + len(rows)))
    return gathered


def request_errors(gathered: Gathered, image_errors: Sequence[ImageError | None]) -> list[str | None]:
    """Per request: None when all its images worked, else a message naming each bad image."""
    messages: list[str | None] = []
    for index, where in enumerate(gathered.slices):
        failed = [f"image {i}: {error}" for i, error in enumerate(image_errors[where]) if error is not None]
        messages.append(gathered.bad_input.get(index) or "; ".join(failed) or None)
    return messages
