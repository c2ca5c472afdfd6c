"""GPU preprocessing with torch: nvJPEG batch decode, resize, crop and normalize on the device.

The same contract as :mod:`resnet_serve.images.preprocess` (shorter side to ``resize`` with the model's
antialiased interpolation, centre crop, the model's normalization, EXIF orientation honoured), computed on a
CUDA device for a whole batch. JPEGs decode on the GPU in one batched call per decoder, each image on the
decoder its size picks (:mod:`resnet_serve.images.gpu_decode`), and images of one size resize together, in chunks
of at most ``RESIZE_CHUNK_PIXELS``;
other formats, CMYK JPEGs, JPEGs whose samples libjpeg reads as RGB or that have a second frame, and
JPEGs the GPU decoder refuses (some progressive files) decode on the CPU with Pillow and are uploaded.
Every image is checked on the CPU first with the CPU path's rules and words (``checked_info``, then
``open_checked`` unless images.checks found a plain JPEG, whose header Pillow would read as an upright
grey or RGB picture), so size limits hold before any pixel is decoded.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from resnet_serve.images.checks import ImageInfo, as_image_error
from resnet_serve.images.gpu_decode import make_decoders
from resnet_serve.images.preprocess import (
    ImageError,
    PreprocessOptions,
    check_jpeg_scans,
    checked_info,
    crop_origin,
    decode_rgb,
    exif_orientation,
    open_checked,
    opens_plain,
    resized_size,
)

# Most decoded pixels resized in one call. Resizing holds several float copies of its input on the GPU:
# one H200, 8 fused instances, one 3361x2521 photo per request at 256 in flight: instances resizing
# their batches of photos (16 on average) at once asked for up to 10.3 GiB in one allocation, ran out of
# memory and failed 78 and 267 requests in 5 s (two runs; benchmarks/RESULTS.md, issue 30). 64 M pixels
# is 7 such photos, and keeps a full batch of 256 500x375 JPEGs (48 M) in one call, as measured.
RESIZE_CHUNK_PIXELS = 64_000_000
# Longest resized side decoded on the GPU; stranger aspect ratios take the CPU path, which resamples
# only the crop, so a 100000x2 image cannot exhaust GPU memory.
MAX_GPU_RESIZED_SIDE = 4096


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a [C, H, W] tensor, as Pillow's ``exif_transpose``."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1).flip(-2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image


def resize_crop_normalize(images: torch.Tensor, options: PreprocessOptions) -> torch.Tensor:
    """uint8 [N, 3, H, W] of one size -> float32 [N, 3, crop, crop], normalized."""
    height, width = images.shape[-2:]
    new_width, new_height = resized_size(width, height, options.resize)
    pixels = images.float()
    if (new_width, new_height) != (width, height):
        pixels = F.interpolate(
            pixels, size=(new_height, new_width), mode=options.interpolation, antialias=True, align_corners=False
        )
    left, top = crop_origin(new_width, new_height, options.crop)
    pixels = pixels[..., top : top + options.crop, left : left + options.crop].round_().clamp_(0, 255)
    mean, std = _mean_std_255(images.device, options.mean, options.std)
    return (pixels - mean) / std


@functools.cache
def _mean_std_255(
    device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's mean and std in 0-255 units on ``device``, copied there once, not per batch."""
    mean_255 = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_255 = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    return mean_255, std_255


def _rgb_coded(header: Image.Image) -> bool:
    """A 3-component JPEG whose samples are RGB, not YCbCr, by libjpeg's rules: an Adobe segment with
    transform 0, or without one, component ids R, G, B and no JFIF segment. The CPU decodes these."""
    if header.mode != "RGB":
        return False
    if "adobe_transform" in header.info:
        return header.info["adobe_transform"] == 0
    return "jfif" not in header.info and bytes(layer[0] for layer in header.layer) == b"RGB"


@functools.cache
def _sample_jpeg() -> bytes:
    """A 64x48 colour JPEG (4:2:0, as most photos) for warm-up."""
    pixels = np.arange(64 * 48 * 3, dtype=np.uint32).reshape(48, 64, 3) % 251
    encoded = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(encoded, "JPEG", quality=90)
    return encoded.getvalue()


@dataclass
class _Decoded:
    pixels: torch.Tensor | None = None  # uint8 [3, H, W] on the device
    error: ImageError | None = None


class GpuPreprocessor:
    """Encoded images -> a [N, 3, crop, crop] tensor on ``device`` (``dtype``), errors per image."""

    def __init__(
        self,
        device: str | torch.device = "cuda",
        dtype: torch.dtype = torch.float16,
        options: PreprocessOptions | None = None,
        decoder: str = "auto",
    ):
        self.device, self.dtype, self.options = torch.device(device), dtype, options or PreprocessOptions()
        self.decoders = make_decoders(self.device, decoder)

    @classmethod
    def for_model(cls, params: dict[str, str], device: str | torch.device, dtype: torch.dtype) -> GpuPreprocessor:
        """A Triton model's preprocessor, from its config parameters (the preprocess options and
        ``gpu_decoder``), warmed up: models build it in ``initialize``, before Triton calls them ready."""
        preprocessor = cls(device, dtype, PreprocessOptions.from_parameters(params), params.get("gpu_decoder", "auto"))
        preprocessor.warm_up()
        return preprocessor

    def warm_up(self) -> None:
        """Decode and resize a small JPEG with each decoder a batch may choose, so that their lazy
        set-up (nvJPEG handles, the hardware engines' state) happens at model load, not on the first
        requests (cold, 32 instances on 4 H200s served 36 img/s at a 1.9 s median for their first
        seconds; benchmarks/RESULTS.md, stop 20)."""
        if self.decoders.large is not self.decoders.small:  # the small JPEG below takes the small one
            self.decoders.large([_sample_jpeg()])
        self([_sample_jpeg()])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _cpu_decode(self, data: bytes, info: ImageInfo | None) -> _Decoded:
        try:
            rgb = np.array(decode_rgb(data, self.options, info))  # writable, for torch
        except Exception as exc:  # any failure is this image's alone
            return _Decoded(error=as_image_error(exc))
        return _Decoded(torch.from_numpy(rgb).to(self.device, non_blocking=True).permute(2, 0, 1))

    def _route(self, data: bytes, info: ImageInfo | None) -> tuple[ImageInfo, int | None]:
        """Check ``data`` as the CPU path does (ImageError, in its words; a JPEG's scans only with
        ``gpu_jpeg_check`` full); return its structure and, for a JPEG the GPU decodes, its EXIF
        orientation (None: the CPU decodes it)."""
        info = checked_info(data, self.options, info)
        if opens_plain(info):  # Pillow's header parse would find an upright grey/RGB JPEG: skip it
            (width, height), orientation = info.size, 1
        elif info.format != "JPEG" or len(info.frames) > 1:  # libjpeg refuses a second frame
            return info, None  # the CPU decoder opens the header (and refuses it, if so) itself
        else:
            header = open_checked(data, self.options, info)
            if header.mode not in ("RGB", "L") or _rgb_coded(header):
                return info, None  # CMYK; RGB-coded samples are libjpeg's to read
            width, height = header.size
            orientation = exif_orientation(header) if self.options.exif_transpose else 1
        if max(resized_size(width, height, self.options.resize)) > MAX_GPU_RESIZED_SIDE:
            return info, None
        if self.options.gpu_jpeg_check == "full":
            check_jpeg_scans(data)
        return info, orientation

    def _decode(self, images: Sequence[bytes], infos: Sequence[ImageInfo | None]) -> list[_Decoded]:
        decoded: list[_Decoded] = [_Decoded() for _ in images]
        checked = list(infos)
        jpegs: dict[Callable, list[int]] = {}  # the JPEGs each GPU decoder takes, in one batch each
        orientations: dict[int, int] = {}
        for index, data in enumerate(images):
            try:
                checked[index], orientation = self._route(data, infos[index])
            except Exception as exc:  # any failure is this image's alone
                decoded[index].error = as_image_error(exc)
                continue
            if orientation is None:
                decoded[index] = self._cpu_decode(data, checked[index])
                continue
            width, height = checked[index].size
            jpegs.setdefault(self.decoders.for_image(width * height), []).append(index)
            orientations[index] = orientation
        for decode, indices in jpegs.items():
            for index, pixels in zip(indices, decode([images[i] for i in indices]), strict=True):
                if pixels is None:  # the GPU refused it: Pillow decides
                    decoded[index] = self._cpu_decode(images[index], checked[index])
                else:
                    decoded[index].pixels = orient(pixels, orientations[index])
        return decoded

    def __call__(
        self, images: Sequence[bytes], infos: Sequence[ImageInfo | None] | None = None
    ) -> tuple[torch.Tensor, list[ImageError | None]]:
        """``infos``: each image's checked structure where known (``preprocess.checked_info``)."""
        crop = self.options.crop
        out = torch.empty((len(images), 3, crop, crop), device=self.device, dtype=self.dtype)
        decoded = self._decode(images, infos or [None] * len(images))
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(decoded):
            if item.pixels is not None:
                by_size.setdefault(tuple(item.pixels.shape[-2:]), []).append(index)
        for (height, width), indices in by_size.items():  # images of one size are resized together
            step = max(1, RESIZE_CHUNK_PIXELS // (height * width))
            for chunk in (indices[start : start + step] for start in range(0, len(indices), step)):
                batch = torch.stack([decoded[i].pixels for i in chunk])
                out[chunk] = resize_crop_normalize(batch, self.options).to(self.dtype)
        return out, [item.error for item in decoded]
