"""Do the GPU JPEG decoders refuse what the CPU path refuses: scans cut short and closed, bit flips?

    python benchmarks/gpu_cut_scans.py --photo mug.jpg          # on a CUDA machine, nvImageCodec optional

For each decoder (torchvision's nvJPEG, nvImageCodec with its default, hardware-only and hybrid backends):
which of 16 cut-and-closed JPEGs (500x375 and the photo's size, baseline and progressive, 20-99.9% of the
scan kept) it answers, and how many of the bit-flipped JPEGs the CPU path refuses it refuses too. Then what
reading every scan on the host costs (``check_jpeg_scans``, ``repo --gpu-jpeg-check full``) against the CPU
path's whole decode. Issue 28; benchmarks/RESULTS.md, stop 39.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from resnet_serve.images.checks import ImageError, inspect_image
from resnet_serve.images.gpu_decode import NvImageCodecDecoder, TorchvisionDecoder, nvimgcodec_installed
from resnet_serve.images.preprocess import check_jpeg_scans, decode_rgb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile_payloads as hp  # the tests' own hostile images


def cpu_refusal(data: bytes) -> str | None:
    try:
        decode_rgb(data, info=inspect_image(data))
    except ImageError as exc:
        return str(exc)
    return None


def decoders(device: torch.device) -> dict:
    found = {"torchvision": TorchvisionDecoder(device)}
    if device.type == "cuda" and nvimgcodec_installed():
        found["nvimgcodec"] = NvImageCodecDecoder(device)
        for backend in ("HW_GPU_ONLY", "HYBRID_CPU_GPU"):
            try:
                found[f"nvimgcodec {backend}"] = NvImageCodecDecoder(device, [backend])
            except Exception as exc:  # a backend this GPU or build lacks
                print(f"no nvImageCodec backend {backend}: {exc}")
    return found


def per_image(decode, data: bytes) -> str:
    try:
        return "DECODED" if decode([data])[0] is not None else "refused"
    except Exception as exc:
        return f"raised {type(exc).__name__}"


def ms_per_call(function, data: bytes, repeat: int = 20) -> float:
    function(data)
    start = time.perf_counter()
    for _ in range(repeat):
        function(data)
    return (time.perf_counter() - start) / repeat * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, required=True, help="a camera photo (the example's mug.jpg)")
    parser.add_argument("--device", default="cuda", help="cuda (cpu: torchvision's CPU decoder, to try the script)")
    args = parser.parse_args()
    photo_bytes = args.photo.read_bytes()
    photo = Image.open(args.photo).convert("RGB")
    cut = {}
    for size in ((500, 375), photo.size):
        for progressive in (False, True):
            data = hp.encode(photo.resize(size), "JPEG", quality=90, progressive=progressive)
            for kept in (0.2, 0.6, 0.95, 0.999):
                cut[f"{size[0]}x{size[1]} progressive={progressive} kept={kept}"] = hp.jpeg_cut_and_closed(data, kept)
    flips = {
        "160x120": [p.data for p in hp.bit_flips({k: v for k, v in hp.base_images(photo).items() if "jpeg" in k}, 300)],
        "photo": [p.data for p in hp.bit_flips({"photo": hp.encode(photo, "JPEG", quality=90)}, 100)],
    }
    refused_on_cpu = {name: [data for data in group if cpu_refusal(data)] for name, group in flips.items()}
    for name, decode in decoders(torch.device(args.device)).items():
        rows = {case: per_image(decode, data) for case, data in cut.items()}
        for group, refused in refused_on_cpu.items():
            answers = decode(refused)
            rows[f"bit flips {group}"] = (f"the CPU path refuses {len(refused)} of {len(flips[group])}; this decoder "
                                          f"refuses {sum(answer is None for answer in answers)} of those")  # fmt: skip
        print(name, json.dumps(rows, indent=1), flush=True)
    small = hp.encode(photo.resize((500, 375)), "JPEG", quality=90)
    for label, data in (("500x375", small), ("photo", photo_bytes)):
        print(
            f"{label}: every scan read on the host {ms_per_call(check_jpeg_scans, data):.2f} ms, "
            f"the CPU path's decode {ms_per_call(decode_rgb, data):.2f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
