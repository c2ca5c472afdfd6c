"""One dynamically batched execution of requests: split into images, and back into replies.

Pure functions shared by the Triton models (the CPU and GPU preprocess models, the fused GPU model
and the classifiers): every image is processed once, together, and a request fails alone with a
message naming its bad images.
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


def request_slices(batch_sizes: Sequence[int]) -> list[slice]:
    """Where each request's rows lie once the requests' tensors are concatenated."""
    stops = np.cumsum(batch_sizes).tolist()
    return [slice(stop - size, stop) for size, stop in zip(batch_sizes, stops, strict=True)]


def responses(
    pb_utils,
    output_name: str,
    outputs,
    slices: Sequence[slice],
    errors: Sequence[str | None] | None = None,
    as_tensor: Callable | None = None,
) -> list:
    """One InferenceResponse per request: its slice of ``outputs`` as ``output_name``, or its error.

    ``pb_utils`` is the Python backend's module (only Triton's stub can import it); ``as_tensor``
    makes the output tensor (default ``pb_utils.Tensor``; GPU models pass one that uses DLPack).
    """
    as_tensor = as_tensor or pb_utils.Tensor
    replies = []
    for index, where in enumerate(slices):
        error = errors[index] if errors else None
        if error:
            replies.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
        else:
            replies.append(pb_utils.InferenceResponse(output_tensors=[as_tensor(output_name, outputs[where])]))
    return replies
