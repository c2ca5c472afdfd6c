"""Preprocess cost per image on one core: the seed's transform, ours, and candidate JPEG decoders.

    python benchmarks/preprocess.py [--image mug.jpg] [--repeat 30]

Everything runs in this one process, single-threaded, on the same images, so the ratios are
honest. Optional decoders (simplejpeg, opencv-python-headless, torchvision) are measured when
installed. Accuracy is the difference from torchvision's eval transform on a full decode
(normalized units; one grey level is about 0.017).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_serve.images.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessOptions,
    normalize_into,
    preprocess_image,
    resize_and_crop,
)
from resnet_serve.images.reference import reference_tensor

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mug.jpg"


def seed_preprocess(data: bytes) -> np.ndarray:
    """The seed's model.py, per request: transforms built anew, squash resize, no RGB conversion."""
    from torchvision import transforms

    loader = transforms.Compose(
        [
            transforms.Resize([224, 224]),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
    return loader(Image.open(io.BytesIO(data))).unsqueeze(0).numpy()


def _finish(rgb: np.ndarray) -> np.ndarray:
    image = resize_and_crop(Image.fromarray(rgb), 256, 224)
    return normalize_into(image, np.empty((3, 224, 224), np.float32))


def _scale_for(width: int, height: int, margin: int) -> int:
    """Largest libjpeg denominator (1, 2, 4, 8) keeping the shorter side >= margin * 256."""
    shorter = min(width, height)
    return max([d for d in (1, 2, 4, 8) if shorter / d >= margin * 256] or [1])


def decoders(data: bytes) -> dict[str, Callable[[bytes], np.ndarray]]:
    """name -> full preprocess with that decoder (resize/crop/normalize are ours for all)."""
    width, height = Image.open(io.BytesIO(data)).size
    found: dict[str, Callable[[bytes], np.ndarray]] = {
        "seed (torchvision transforms, squash)": seed_preprocess,
        "torchvision eval transform": reference_tensor,
        "ours, full decode (exact)": lambda d: preprocess_image(d, PreprocessOptions(jpeg_draft=False)),
        "ours, Pillow draft >= 2x target (default)": preprocess_image,
    }

    def pillow_draft_1x(d: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(d))
        image.draft("RGB", (round(width * 256 / min(width, height)), round(height * 256 / min(width, height))))
        return _finish(np.asarray(image.convert("RGB")))

    found["Pillow draft >= 1x target"] = pillow_draft_1x
    try:
        import simplejpeg

        found["simplejpeg, >= 2x target"] = lambda d: _finish(
            simplejpeg.decode_jpeg(d, colorspace="RGB", min_height=512, min_width=512, fastdct=False)
        )
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: 64 | 1}
        flag = flags[_scale_for(width, height, 2)]
        found["OpenCV imdecode reduced, >= 2x target"] = lambda d: _finish(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), flag), cv2.COLOR_BGR2RGB)
        )
    except ImportError:
        pass
    try:
        import torch
        from torchvision.io import decode_jpeg

        torch.set_num_threads(1)
        found["torchvision.io.decode_jpeg (CPU, full)"] = lambda d: _finish(
            decode_jpeg(torch.frombuffer(bytearray(d), dtype=torch.uint8)).permute(1, 2, 0).numpy()
        )
    except ImportError:
        pass
    return found


def median_ms(function: Callable[[bytes], np.ndarray], data: bytes, repeat: int) -> float:
    function(data)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(data)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    original = args.image.read_bytes()
    small = io.BytesIO()
    Image.open(io.BytesIO(original)).convert("RGB").resize((500, 375), Image.Resampling.LANCZOS).save(
        small, "JPEG", quality=90
    )
    for label, data in (
        (f"{args.image.name} {Image.open(io.BytesIO(original)).size}", original),
        ("500x375 JPEG", small.getvalue()),
    ):
        reference = reference_tensor(data)
        candidates = decoders(data)
        seed_ms = median_ms(candidates["seed (torchvision transforms, squash)"], data, args.repeat)
        print(f"\n{label}: median ms per image, one thread ({args.repeat} runs)")
        print(f"{'method':<44} {'ms':>8} {'vs seed':>8} {'mean |d|':>9} {'max |d|':>8}")
        for name, function in candidates.items():
            ms = seed_ms if name.startswith("seed") else median_ms(function, data, args.repeat)
            out = function(data).reshape(3, 224, 224)
            diff = np.abs(out - reference)
            accuracy = (
                ("   (other crop)", "") if name.startswith("seed") else (f"{diff.mean():9.4f}", f"{diff.max():8.3f}")
            )
            print(f"{name:<44} {ms:8.2f} {seed_ms / ms:7.1f}x {accuracy[0]} {accuracy[1]}")


if __name__ == "__main__":
    main()
