"""Image bytes -> normalized float32 tensors, as torchvision's ImageNet eval transform.

Pure functions over Pillow and numpy (no torch): the Triton preprocess model is a thin shell
over :func:`preprocess_batch`. The numbers follow ``Resize(resize, interpolation) -> CenterCrop(crop)
-> ToTensor -> Normalize(mean, std)`` on a PIL image converted to RGB, as torchvision's
``weights.transforms()`` (the model card gives the values: 256/224 bilinear ImageNet for ResNet-50).
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from resnet_serve.contract import DEFAULT_MAX_REQUEST_BYTES, IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_SIZE
from resnet_serve.images.checks import (
    ImageError,
    ImageInfo,
    as_image_error,
    check_pixels,
    check_rows_filled,
    inspect_image,
)
from resnet_serve.model_card import Interpolation
from resnet_serve.options import from_parameters, option, to_parameters

EXIF_ORIENTATION = 0x0112

GpuJpegCheck = Literal["structure", "full"]

_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True, kw_only=True)
class PreprocessOptions:
    """How images are decoded and shaped; defaults match torchvision's eval transform.

    The preprocess models read these from their config's parameters (:meth:`from_parameters`); the
    fields declared with ``option`` are also ``repo``/``bench`` command-line options.
    """

    # How the model is fed (its card's values, written by the repository writer; no CLI option).
    resize: int = RESIZE_SIZE  # must be >= crop
    crop: int = IMAGE_SIZE
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_image_bytes: int = option(64 * 1024 * 1024, "largest encoded image accepted, in bytes")
    max_request_bytes: int = option(
        DEFAULT_MAX_REQUEST_BYTES, "largest request tensor (all its images) accepted, in bytes; refused before decoding"
    )
    max_pixels: int = option(100_000_000, "largest image (width*height of any frame), checked from its headers")
    # Decoded pixels (JPEGs at their draft size): a full batch of 256 photos of 12 Mpx fits; 8 lossless
    # WebPs of 34 bytes declaring 10000x10000 (7.2 s and 3.1 GB to decode, issue 14) do not.
    max_request_pixels: int = option(
        256_000_000, "most decoded pixels in one request, all its images together; refused before decoding"
    )
    exif_transpose: bool = option(
        True, "ignore EXIF orientation (torchvision's behaviour); default rotates as phones expect"
    )
    jpeg_draft: bool = option(
        True, "always decode JPEGs at full size (exact torchvision numbers, slower on big photos)"
    )
    # The pixel limits bound every image known: the costliest request they let through (ten 24 MP
    # progressive JPEGs) takes 3.7 s of CPU on the 2-core CI machine, a request of 256 camera photos
    # (3361x2521) 4.6 s (2.3 s on its two cores; benchmarks/RESULTS.md, issue 28). This limit, 2-3x
    # those, is for what no check foresaw.
    max_request_decode_ms: int = option(
        10_000, "most CPU milliseconds spent on one request's images; those not yet started are refused (0: none)"
    )
    # The CPU path always reads every JPEG scan strictly (_load_jpeg: as fast as Pillow's decode). nvJPEG and
    # nvImageCodec decode a scan cut short or a bad Huffman code without a word (one H200: nvImageCodec
    # answered 16 of 16 cut scans, torchvision 15); reading the scans on the CPU first costs 0.40 ms per
    # 500x375 JPEG and 18.8 ms per 3361x2521 photo on that host's Xeon, 0.30 and 0.73 of its CPU decode,
    # and served 0.80x and 0.39x the img/s (benchmarks/RESULTS.md, stop 39).
    gpu_jpeg_check: GpuJpegCheck = option(
        "structure",
        "GPU path: structure = the checks before decoding (images.checks), then the GPU decodes what the "
        "scans hold; full = libjpeg-turbo also reads every scan on the CPU first, refusing what the CPU path does",
    )

    def to_parameters(self) -> dict[str, str]:
        return to_parameters(self)

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> PreprocessOptions:
        return from_parameters(cls, params)


def checked_info(
    data: bytes, options: PreprocessOptions = PreprocessOptions(), info: ImageInfo | None = None
) -> ImageInfo:
    """The checks of :func:`open_checked` made without Pillow: bytes present and within the limit,
    their structure (images.checks: format, completeness) and every frame's size.

    ``info`` is the bytes' :func:`inspect_image` result where the caller already checked them (a
    served batch screens every image before decoding): they are not walked a second time.
    """
    if not data:
        raise ImageError("empty image")
    if len(data) > options.max_image_bytes:
        raise ImageError(f"{len(data)} bytes exceeds the limit of {options.max_image_bytes}")
    if info is None:
        info = inspect_image(data)
    check_pixels(info, options.max_pixels)
    check_rows_filled(data, info)
    return info


def opens_plain(info: ImageInfo) -> bool:
    """Whether :func:`open_checked` would open these checked bytes as an upright 8-bit grey or RGB
    JPEG of ``info.size``, so a JPEG decoder may take them without Pillow reading the header first:
    images.checks found nothing in the header but the picture (``ImageInfo.plain``: no EXIF, colour
    profile or colour transform), and the size is within Pillow's decompression-bomb limit."""
    width, height = info.size
    bomb = Image.MAX_IMAGE_PIXELS
    return info.plain and (bomb is None or width * height <= 2 * bomb)


def open_checked(
    data: bytes, options: PreprocessOptions = PreprocessOptions(), info: ImageInfo | None = None
) -> Image.Image:
    """Check the bytes (:func:`checked_info`), then open the header with the one Pillow plugin of
    that format; no pixel is decoded. ``info``: as :func:`checked_info`."""
    info = checked_info(data, options, info)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data[: info.end]), formats=[info.format])
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a decodable {info.format} image") from None
    except Exception as exc:  # Pillow raises many types for unreadable data
        raise ImageError(f"not a decodable image ({exc})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"invalid image size {width}x{height}")
    if width * height > options.max_pixels:
        raise ImageError(f"{width}x{height} pixels exceeds the limit of {options.max_pixels}")
    return image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 to 8; 1 means upright). A value that is not an integer from 1 to
    8 (e.g. text, as some writers store it) or unreadable EXIF counts as upright."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF: Pillow raises many types
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_rgb(
    data: bytes, options: PreprocessOptions = PreprocessOptions(), info: ImageInfo | None = None
) -> Image.Image:
    """Decode encoded image bytes into an RGB image, refusing oversized or broken input."""
    image = open_checked(data, options, info)
    try:
        orientation = exif_orientation(image) if options.exif_transpose else 1
        if image.format == "JPEG":
            if options.jpeg_draft:
                _draft_for_resize(image, options.resize)
            image = _load_jpeg(image, data)
        else:
            image.load()
        if orientation != 1:
            image = image.transpose(_EXIF_TRANSPOSE[orientation])
        return _to_rgb(image)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{image.format or 'image'} decode failed ({exc})") from None


# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Pillow's raw mode of a JPEG's pixels -> the colour space libjpeg-turbo is asked for (simplejpeg's names).
_JPEG_COLORSPACE = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK", "CMYK;I": "CMYK"}


def _load_jpeg(image: Image.Image, data: bytes) -> Image.Image:
    """The pixels of the JPEG ``image`` (opened by Pillow, its draft size chosen), decoded by libjpeg-turbo
    through simplejpeg, which refuses what libjpeg only warns about: a scan that ends before its frame is
    filled, a bad Huffman code. Pillow's own decode fills the missing blocks and says nothing (issue 28).
    Layouts the TurboJPEG API cannot name (:func:`_turbojpeg_reads`) are left to Pillow.

    The same library, scale (Pillow's draft size is a libjpeg scale: the smallest at least that size),
    DCT and upsampling as Pillow's decode, and Pillow's raw mode (inverted Adobe CMYK): the same pixels
    (tests/test_preprocess.py). No slower: the decode alone took 0.34 ms against Pillow's 0.66 on a 500x375
    JPEG and 10.8 against 11.6 on a 3361x2521 photo; a whole preprocess per image measured within noise
    of Pillow's (benchmarks/RESULTS.md, stop 39).
    """
    rawmode = image.tile[0].args[0]
    if rawmode not in _JPEG_COLORSPACE or not _turbojpeg_reads(data):
        image.load()  # only the checks' least-cost bound on its scans holds here (docs/security.md)
        return image
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace=_JPEG_COLORSPACE[rawmode], min_width=image.width, min_height=image.height
        )
    except ValueError as exc:
        raise _strict_jpeg_error(exc) from None
    if pixels.shape[:2] != (image.height, image.width):
        raise ImageError(f"JPEG decoded to {pixels.shape[1]}x{pixels.shape[0]}, expected {image.width}x{image.height}")
    return Image.frombuffer(image.mode, image.size, pixels, "raw", rawmode, 0, 1)


def check_jpeg_scans(data: bytes) -> None:
    """Have libjpeg-turbo read every scan of ``data`` strictly, as :func:`_load_jpeg` does, at the smallest
    scale (the entropy decoding is the cost): for a decoder that fills what is missing without a word
    (nvJPEG, PreprocessOptions.gpu_jpeg_check). Raises the CPU path's ImageError."""
    if not _turbojpeg_reads(data):
        return  # the CPU path leaves these to Pillow, as lenient
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_width=1, min_height=1)
    except ValueError as exc:
        raise _strict_jpeg_error(exc) from None


def _strict_jpeg_error(exc: ValueError) -> ImageError:
    """libjpeg's warning, made an error by simplejpeg (``Corrupt JPEG data: premature end of data segment``)."""
    message = str(exc).removeprefix("Corrupt JPEG data: ")
    return ImageError(f"{'truncated' if 'premature end' in message else 'corrupt'} JPEG: {message}")


def _turbojpeg_reads(data: bytes) -> bool:
    """Whether libjpeg-turbo's TurboJPEG API (simplejpeg) takes this JPEG's layout: it names no sampling
    of CMYK with subsampled colour planes (as Pillow writes CMYK by default), which Pillow then decodes."""
    try:
        simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return False
    return True


def _draft_for_resize(image: Image.Image, shorter_side: int) -> None:
    """Let libjpeg scale by 1/2, 1/4 or 1/8 in the DCT while at least 2x the resize target stays.

    Keeping twice the target keeps the final antialiased resize doing most of the work, which holds
    the result close to a full decode (benchmarks/RESULTS.md has the measured difference).
    """
    width, height = image.size
    scale = 2 * shorter_side / min(width, height)
    if scale < 1.0:
        image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; 16-bit and float gray are scaled to 8 bits first."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values * (255.0 / peak), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``size`` and the aspect ratio kept (torchvision's rounding)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def crop_origin(width: int, height: int, size: int) -> tuple[int, int]:
    """(left, top) of the centred ``size`` square (torchvision's rounding)."""
    return round((width - size) / 2.0), round((height - size) / 2.0)


def resize_and_crop(image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> Image.Image:
    """torchvision's Resize(resize, interpolation) then CenterCrop(crop), resampling only the cropped region.

    Pillow's ``box`` keeps the filter support of a full resize, so the numbers are the same, while a
    very wide or tall image never allocates its full resized size.
    """
    width, height = image.size
    new_width, new_height = resized_size(width, height, resize)
    left, top = crop_origin(new_width, new_height, crop)
    if (new_width, new_height) == (width, height):
        return image.crop((left, top, left + crop, top + crop))
    scale_x, scale_y = width / new_width, height / new_height
    box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    return image.resize((crop, crop), _RESAMPLING[interpolation], box=box)


@cache
def scale_and_bias(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """ToTensor (x / 255) and Normalize ((x - mean) / std) fused into one multiply-add per channel:
    float32 [3, 1, 1] scale and bias."""
    std64 = np.asarray(std, dtype=np.float64)
    scale = (1.0 / (255.0 * std64)).astype(np.float32)
    bias = (-np.asarray(mean, dtype=np.float64) / std64).astype(np.float32)
    return scale[:, None, None], bias[:, None, None]


def normalize_into(
    image: Image.Image, out: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> np.ndarray:
    """Write the CHW float32 normalized pixels of an RGB image into ``out``."""
    scale, bias = scale_and_bias(tuple(mean), tuple(std))
    pixels = np.asarray(image, dtype=np.uint8)
    np.multiply(pixels.transpose(2, 0, 1), scale, out=out, dtype=np.float32)
    out += bias
    return out


def preprocess_image(
    data: bytes,
    options: PreprocessOptions = PreprocessOptions(),
    out: np.ndarray | None = None,
    info: ImageInfo | None = None,
) -> np.ndarray:
    """One encoded image -> float32 [3, crop, crop] (``info``: as :func:`open_checked`)."""
    if out is None:
        out = np.empty((3, options.crop, options.crop), dtype=np.float32)
    image = resize_and_crop(decode_rgb(data, options, info), options.resize, options.crop, options.interpolation)
    return normalize_into(image, out, options.mean, options.std)


def rows_to_bytes(batch: np.ndarray, lengths: Sequence[int] | None = None) -> list[bytes]:
    """Split a UINT8 [N, L] request tensor into N encoded images, each cut to ``lengths`` when given
    (only the image bytes are copied), else whole rows (zero padding kept)."""
    if batch.dtype != np.uint8:
        raise ImageError(f"expected UINT8 image bytes, got {batch.dtype}")
    if batch.ndim == 1:
        batch = batch[None, :]
    if batch.ndim != 2:
        raise ImageError(f"expected a [batch, bytes] tensor, got shape {list(batch.shape)}")
    if lengths is None:
        return [row.tobytes() for row in batch]
    return [row[:length].tobytes() for row, length in zip(batch, lengths, strict=True)]


class DecodeBudget:
    """Each request's CPU time on its images (each image's thread time, so waiting for a core under
    load does not count): once a request has spent ``options.max_request_decode_ms``, its images
    not yet started are refused, not decoded."""

    def __init__(self, options: PreprocessOptions, owners: Sequence[int] | None = None):
        self.limit_ms, self.owners = options.max_request_decode_ms, owners
        self.used_s: dict[int, float] = {}
        self._lock = threading.Lock()  # images of one request finish on several threads

    def _owner(self, index: int) -> int:
        return self.owners[index] if self.owners else index

    def spent(self, index: int) -> ImageError | None:
        """None while image ``index``'s request has time left, else why the image is not decoded."""
        if not self.limit_ms or self.used_s.get(self._owner(index), 0.0) * 1000 <= self.limit_ms:
            return None
        return ImageError(f"not decoded: its request's images took over {self.limit_ms} ms (max_request_decode_ms)")

    def add(self, index: int, seconds: float) -> None:
        """Count ``seconds`` of CPU that image ``index`` took against its request."""
        owner = self._owner(index)
        with self._lock:
            self.used_s[owner] = self.used_s.get(owner, 0.0) + seconds


def preprocess_batch(
    images: Sequence[bytes],
    options: PreprocessOptions = PreprocessOptions(),
    executor: Executor | None = None,
    infos: Sequence[ImageInfo | None] | None = None,
    owners: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[ImageError | None]]:
    """Preprocess many images into one preallocated [N, 3, crop, crop] array.

    Returns the array and one entry per image: ``None`` when it worked, else the ImageError (its
    slot in the array is left undefined). Work spreads over ``executor`` when given; Pillow releases
    the GIL while decoding and resizing. ``infos``: each image's checked structure, where known.
    ``owners``: the request of each image, whose time :class:`DecodeBudget` bounds (default: each
    image its own request).
    """
    out = np.empty((len(images), 3, options.crop, options.crop), dtype=np.float32)
    budget = DecodeBudget(options, owners)

    def run(index: int) -> ImageError | None:
        if error := budget.spent(index):
            return error
        started = time.thread_time()
        try:
            preprocess_image(images[index], options, out[index], infos[index] if infos else None)
        except Exception as exc:  # any failure is this image's alone (a stub once kept ~1 GB of frames)
            return as_image_error(exc)
        finally:
            budget.add(index, time.thread_time() - started)
        return None

    indices = range(len(images))
    errors = list(executor.map(run, indices)) if executor and len(images) > 1 else [run(i) for i in indices]
    return out, errors
