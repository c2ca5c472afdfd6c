"""GPU JPEG decoders side by side: throughput of the whole GPU preprocess by batch size, and parity.

    python benchmarks/gpu_decoders.py --photo .whl/data/mug.jpg --out $OUT     # on the lent GPU machine

For each decoder (torchvision's nvJPEG, nvImageCodec with its default backends, with the hardware
decoder first, CUDA only), in ONE process, interleaved: img/s of ``GpuPreprocessor`` (decode + resize
256 + crop 224 + normalize, fp16) at batch 1..256 on a 500x375 JPEG and the 3361x2521 photo, and the
mean / max absolute difference (normalized units) from torchvision's CPU eval transform.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnet_serve.images.gpu_decode import DecoderChoice, NvImageCodecDecoder, TorchvisionDecoder
from resnet_serve.images.preprocess import PreprocessOptions
from resnet_serve.images.preprocess_gpu import GpuPreprocessor
from resnet_serve.images.reference import reference_tensor

EXACT = PreprocessOptions(jpeg_draft=False, exif_transpose=False)
DECODERS = {
    "torchvision": lambda device: TorchvisionDecoder(device),
    "nvimgcodec": lambda device: NvImageCodecDecoder(device),
    "nvimgcodec-hw": lambda device: NvImageCodecDecoder(device, ["HW_GPU_ONLY", "GPU_ONLY"]),
    "nvimgcodec-cuda": lambda device: NvImageCodecDecoder(device, ["GPU_ONLY"]),
}


def encode(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def test_images(photo: bytes) -> dict[str, bytes]:
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    small = image.resize((500, 375), Image.Resampling.LANCZOS)
    return {
        "mug.jpg 3361x2521": photo,
        "500x375 q90": encode(small, quality=90),
        "500x375 q90 4:4:4": encode(small, quality=90, subsampling=0),
        "500x375 progressive": encode(small, quality=90, progressive=True),
        "500x375 gray": encode(small.convert("L"), quality=90),
        "120x90": encode(image.resize((120, 90)), quality=90),
    }


def preprocessor(name: str, device: torch.device) -> GpuPreprocessor:
    preprocess = GpuPreprocessor(device, torch.float16, EXACT, decoder="torchvision")
    decoder = DECODERS[name](device)
    preprocess.decoders = DecoderChoice(decoder, decoder)  # the probe swaps decoders behind one preprocessor
    return preprocess


def img_per_s(preprocess: GpuPreprocessor, group: list[bytes], seconds: float = 1.0) -> float:
    for _ in range(2):
        preprocess(group)
    torch.cuda.synchronize()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        preprocess(group)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(group) / sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--decoders", default=",".join(DECODERS))
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    names = args.decoders.split(",")
    images = test_images(args.photo.read_bytes())
    report: dict = {"device": torch.cuda.get_device_name(device), "parity": {}, "img_per_s": {}}
    processors = {}
    for name in names:
        try:
            processors[name] = preprocessor(name, device)
        except Exception as exc:
            print(f"{name}: cannot start: {exc!r}", flush=True)
    print("parity vs torchvision CPU eval transform (normalized units): mean / max", flush=True)
    for label, data in images.items():
        expected = reference_tensor(data)
        row = {}
        for name, preprocess in processors.items():
            batch, errors = preprocess([data])
            assert errors == [None], errors
            difference = np.abs(batch[0].float().cpu().numpy() - expected)
            row[name] = (float(difference.mean()), float(difference.max()))
        report["parity"][label] = row
        print(f"  {label:<22}" + "".join(f" {n}: {m:.4f}/{x:.3f}" for n, (m, x) in row.items()), flush=True)
    sizes = {"500x375": (images["500x375 q90"], (1, 2, 8, 32, 64, 128, 256)),
             "3361x2521": (images["mug.jpg 3361x2521"], (1, 8, 32, 64))}  # fmt: skip
    print("img/s of the whole GPU preprocess (fp16), median of >= 1 s per point, decoders interleaved", flush=True)
    for label, (data, batches) in sizes.items():
        for batch in batches:
            group = [data] * batch
            row = {name: img_per_s(preprocess, group) for name, preprocess in processors.items()}
            report["img_per_s"][f"{label} b{batch}"] = row
            print(f"  {label:<9} b{batch:<4}" + "".join(f" {n}: {v:8.0f}" for n, v in row.items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-decoders.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
