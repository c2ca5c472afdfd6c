"""One dynamically batched execution of requests: split into images, and back into replies.

Pure functions shared by the Triton models (the CPU and GPU preprocess models, the fused GPU model
and the classifiers): every image is processed once, together, and a request fails alone with a
message naming its bad images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from resnet_serve.contract import ENSEMBLE_LENGTHS
from resnet_serve.images.checks import ImageInfo, as_image_error, check_pixels, decoded_pixels, inspect_image
from resnet_serve.images.preprocess import ImageError, PreprocessOptions, rows_to_bytes


@dataclass
class Gathered:
    """The images of all requests, flattened, and where each request's images lie."""

    images: list[bytes] = field(default_factory=list)
    infos: list[ImageInfo | None] = field(default_factory=list)  # each image's checked structure (None: refused)
    slices: list[slice] = field(default_factory=list)
    bad_input: dict[int, str] = field(default_factory=dict)  # request index -> why its tensor was refused
    screened: dict[int, ImageError] = field(default_factory=dict)  # image index -> refused before decoding

    @property
    def owners(self) -> list[int]:
        """The request index of each image."""
        return [index for index, where in enumerate(self.slices) for _ in range(where.start, where.stop)]


def gather_images(
    requests: Sequence,
    read_input: Callable[[object], np.ndarray],
    input_name: str,
    options: PreprocessOptions,
    read_lengths: Callable[[object], np.ndarray | None] | None = None,
    lengths_name: str = ENSEMBLE_LENGTHS,
) -> Gathered:
    """Flatten the UINT8 [N, L] image tensors of ``requests`` (``read_input(request)`` returns one).

    ``read_lengths(request)`` returns the request's INT64 [N, 1] image lengths, or None when it sent
    none (the seed's one-input contract): each row is then cut where its image's own structure ends,
    and in multi-image rows trailing zeros never stand in for image data. Refused whole, before any
    decoding: a tensor over ``options.max_request_bytes``, bad lengths, and a request whose images
    declare more than ``options.max_request_pixels`` decoded pixels together.
    """
    gathered = Gathered()
    for index, request in enumerate(requests):
        try:
            rows, sent_lengths = _request_rows(
                request, read_input, input_name, read_lengths, lengths_name, options.max_request_bytes
            )
        except ImageError as exc:
            rows, sent_lengths = [], False
            gathered.bad_input[index] = str(exc)
        start = len(gathered.images)
        padded = not sent_lengths and len(rows) > 1
        rows, infos, pixels = _screen(rows, start, gathered.screened, options, may_be_padded=padded)
        if pixels > options.max_request_pixels:
            rows, infos = [], []
            gathered.bad_input[index] = (
                f"{input_name}: request of {pixels} decoded pixels exceeds the limit of {options.max_request_pixels}"
            )
        gathered.images.extend(rows)
        gathered.infos.extend(infos)
        gathered.slices.append(slice(start, start + len(rows)))
    return gathered


def gather_requests(
    pb_utils, requests: Sequence, input_name: str, lengths_name: str, options: PreprocessOptions
) -> Gathered:
    """:func:`gather_images` over Triton requests: each one's ``input_name`` tensor and its optional
    ``lengths_name`` tensor (absent from a client of the seed's one-input contract).

    ``pb_utils`` is the Python backend's module, as in :func:`responses`.
    """

    def read_input(request) -> np.ndarray:
        return pb_utils.get_input_tensor_by_name(request, input_name).as_numpy()

    def read_lengths(request) -> np.ndarray | None:
        tensor = pb_utils.get_input_tensor_by_name(request, lengths_name)
        return None if tensor is None else tensor.as_numpy()

    return gather_images(requests, read_input, input_name, options, read_lengths, lengths_name)


def _request_rows(request, read_input, input_name, read_lengths, lengths_name, max_bytes) -> tuple[list[bytes], bool]:
    """One request's images (cut to their lengths when it sent them: padding is never copied) and
    whether it sent lengths. The ImageError raised names the input at fault."""
    tensor = read_input(request)
    if tensor.nbytes > max_bytes:
        raise ImageError(f"{input_name}: request of {tensor.nbytes} bytes exceeds the limit of {max_bytes}")
    lengths = read_lengths(request) if read_lengths else None
    try:
        cut = None if lengths is None else checked_lengths(lengths, tensor.shape)
    except ImageError as exc:
        raise ImageError(f"{lengths_name}: {exc}") from None
    try:
        return rows_to_bytes(tensor, cut), lengths is not None
    except ImageError as exc:
        raise ImageError(f"{input_name}: {exc}") from None


def checked_lengths(lengths: np.ndarray, shape: Sequence[int]) -> list[int]:
    """The image lengths (INT64 [N, 1] or [N]) of a [N, L] image tensor, each from 1 to L."""
    rows, width = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[-1])
    if lengths.dtype.kind not in "iu":
        raise ImageError(f"expected integer lengths, got {lengths.dtype}")
    if lengths.ndim not in (1, 2) or lengths.size != rows or lengths.shape[0] != rows:
        raise ImageError(f"expected {rows} lengths, shape [{rows}, 1], got shape {list(lengths.shape)}")
    flat = lengths.reshape(-1).tolist()
    for image, length in enumerate(flat):
        if not 0 < length <= width:
            raise ImageError(f"length of image {image} must be 1 to {width} (the row's bytes), got {length}")
    return flat


def _screen(
    rows: list[bytes], start: int, screened: dict[int, ImageError], options: PreprocessOptions, may_be_padded: bool
) -> tuple[list[bytes], list[ImageInfo | None], int]:
    """Check each row's structure; cut it to the image's end. Returns the rows (refused ones empty,
    their errors in ``screened`` by image index), their structures (None where refused) and the
    decoded pixels the others declare."""
    kept, infos, pixels = [], [], 0
    for offset, row in enumerate(rows):
        try:
            info = inspect_image(row, may_be_padded=may_be_padded)
            check_pixels(info, options.max_pixels)
        except Exception as exc:  # any failure is this image's alone
            screened[start + offset] = as_image_error(exc)
            kept.append(b"")
            infos.append(None)
            continue
        kept.append(row[: info.end])
        infos.append(info)
        pixels += decoded_pixels(info, options.resize, options.jpeg_draft)
    return kept, infos, pixels


def request_errors(gathered: Gathered, image_errors: Sequence[ImageError | None]) -> list[str | None]:
    """Per request: None when all its images worked, else a message naming each bad image."""
    messages: list[str | None] = []
    for index, where in enumerate(gathered.slices):
        errors = [gathered.screened.get(i) or image_errors[i] for i in range(where.start, where.stop)]
        failed = [f"image {i}: {error}" for i, error in enumerate(errors) if error is not None]
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
        if error:  # the client's: 400 over HTTP, INVALID_ARGUMENT over gRPC (a 5xx would get a healthy backend ejected)
            replies.append(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG))
            )
        else:
            replies.append(pb_utils.InferenceResponse(output_tensors=[as_tensor(output_name, outputs[where])]))
    return replies
