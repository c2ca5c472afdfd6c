"""Batched JPEG decode on a CUDA device: encoded bytes -> uint8 RGB [3, H, W] tensors, None where it fails.

Two decoders with one interface (``decoder(list_of_bytes)``), chosen per image by :func:`make_decoders`:

- :class:`NvImageCodecDecoder`: nvImageCodec (``pip install resnet-serve[gpu]``), NVIDIA's maintained
  decoder; nvJPEG with the hardware JPEG engines where the GPU has them, CUDA otherwise.
- :class:`TorchvisionDecoder`: nvJPEG through ``torchvision.io.decode_jpeg`` (deprecated in torchvision
  0.29; kept as the fallback when nvImageCodec is not installed).

Callers check headers and size limits on the CPU first (``preprocess_gpu.GpuPreprocessor``): these decoders
only ever see JPEGs that passed those checks, and a None result falls back to the CPU decoder.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

if TYPE_CHECKING:  # torch is imported where a decoder is made: the repository writer reads the names without it
    import torch

GpuDecoder = Literal["auto", "nvimgcodec", "torchvision"]
DECODERS: tuple[str, ...] = get_args(GpuDecoder)


class TorchvisionDecoder:
    """nvJPEG via torchvision: one batched call; if the batch fails, image by image."""

    def __init__(self, device: torch.device):
        from torchvision.io import ImageReadMode, decode_jpeg

        self.device, self._decode_jpeg, self._rgb = device, decode_jpeg, ImageReadMode.RGB

    def __call__(self, images: Sequence[bytes]) -> list[torch.Tensor | None]:
        import torch

        tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in images]
        try:
            return list(self._decode_jpeg(tensors, mode=self._rgb, device=self.device))
        except RuntimeError:
            pass
        results: list[torch.Tensor | None] = []
        for tensor in tensors:
            try:
                results.append(self._decode_jpeg([tensor], mode=self._rgb, device=self.device)[0])
            except RuntimeError:
                results.append(None)
        return results


class NvImageCodecDecoder:
    """nvImageCodec batch decode on ``device``, ordered on torch's current stream there.

    EXIF orientation is left to the caller (the CPU path reads it from the header); chroma is
    upsampled as libjpeg-turbo does by default (``fancy_upsampling``), closer to Pillow's pixels.
    """

    def __init__(self, device: torch.device, backends: Sequence[str] | None = None):
        import torch
        from nvidia import nvimgcodec

        index = device.index if device.index is not None else torch.cuda.current_device()
        self.device, self._codec = torch.device("cuda", index), nvimgcodec
        kinds = None if backends is None else [nvimgcodec.Backend(getattr(nvimgcodec, name)) for name in backends]
        self._decoder = nvimgcodec.Decoder(device_id=index, backends=kinds, options=":fancy_upsampling=1")
        self._params = nvimgcodec.DecodeParams(
            apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB, sample_format=nvimgcodec.I_RGB
        )

    def _stream(self, data: bytes):
        try:
            return self._codec.CodeStream(data)
        except Exception:
            return None

    def __call__(self, images: Sequence[bytes]) -> list[torch.Tensor | None]:
        import torch

        streams = [self._stream(data) for data in images]
        valid = [index for index, stream in enumerate(streams) if stream is not None]
        stream = torch.cuda.current_stream(self.device).cuda_stream
        decoded = self._decoder.decode([streams[i] for i in valid], params=self._params, cuda_stream=stream)
        results: list[torch.Tensor | None] = [None] * len(images)
        for index, image in zip(valid, decoded, strict=True):
            if image is not None:
                results[index] = torch.from_dlpack(image).permute(2, 0, 1)  # HWC -> CHW, no copy
        return results


def nvimgcodec_installed() -> bool:
    try:
        return importlib.util.find_spec("nvidia.nvimgcodec") is not None
    except ModuleNotFoundError:  # no ``nvidia`` namespace package at all
        return False


# Pixels of one image from which "auto" takes nvImageCodec. Measured on an H200: torchvision won at
# every batch of 500x375 JPEGs (0.19 MP; b256: 10.4k vs 6.3k img/s, whole GPU preprocess,
# results/gpu-multi-gpu.md); served with 8 fused instances, one 3361x2521 photo (8.5 MP) per request,
# 64 in flight: nvImageCodec 1,168 img/s, torchvision 1,002 (both on the hardware JPEG engines by NVML;
# benchmarks/RESULTS.md, issue 30). Nothing between the two sizes was measured: 2 MP is not tuned.
LARGE_IMAGE_PIXELS = 2_000_000


class DecoderChoice(NamedTuple):
    """The decoder of each image, by its decoded size (``small`` and ``large`` may be the same one)."""

    small: Callable[[Sequence[bytes]], list]
    large: Callable[[Sequence[bytes]], list]

    def for_image(self, pixels: int) -> Callable[[Sequence[bytes]], list]:
        return self.large if pixels >= LARGE_IMAGE_PIXELS else self.small


def make_decoders(device: torch.device, name: str = "auto") -> DecoderChoice:
    """The decoder(s) called ``name``. ``auto``: torchvision, and nvImageCodec for large images when
    installed. On a CPU device (tests without a GPU) torchvision's CPU decoder stands in."""
    if name not in DECODERS:
        raise ValueError(f"unknown GPU decoder {name!r}; choose one of {', '.join(DECODERS)}")
    if device.type != "cuda" or name == "torchvision" or (name == "auto" and not nvimgcodec_installed()):
        torchvision = TorchvisionDecoder(device)
        return DecoderChoice(torchvision, torchvision)
    nvimgcodec = NvImageCodecDecoder(device)
    return DecoderChoice(nvimgcodec if name == "nvimgcodec" else TorchvisionDecoder(device), nvimgcodec)
