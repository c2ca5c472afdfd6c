"""Benchmark and calibration images made from one photo (default ../shared/data/mug.jpg).

    python benchmarks/make_images.py OUT_DIR [--photo mug.jpg]

Writes OUT_DIR/mug.jpg (the photo as is), OUT_DIR/mug_500x375.jpg, and OUT_DIR/calibration/ with 24
random crops and rescales of the photo plus the synthetic mix from `resnet_serve.bench`. Only one real
photo exists on our machines, so this calibration set is narrow: with real weights, calibrate on a few
hundred photos of your own domain instead.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_serve.bench import synthetic_photos

DEFAULT_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mug.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    args = parser.parse_args()
    calibration = args.out / "calibration"
    calibration.mkdir(parents=True, exist_ok=True)
    data = args.photo.read_bytes()
    (args.out / "mug.jpg").write_bytes(data)
    photo = Image.open(io.BytesIO(data)).convert("RGB")
    photo.resize((500, 375), Image.Resampling.LANCZOS).save(args.out / "mug_500x375.jpg", quality=90)
    rng = np.random.default_rng(0)
    for index in range(24):
        scale = rng.uniform(0.3, 1.0)
        width, height = int(photo.width * scale), int(photo.height * scale)
        left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
        crop = photo.crop((left, top, left + width, top + height)).resize((width // 4, height // 4))
        crop.save(calibration / f"crop_{index:02d}.jpg", quality=90)
    for index, synthetic in enumerate(synthetic_photos()):
        (calibration / f"synthetic_{index}.jpg").write_bytes(synthetic)
    print(args.out)


if __name__ == "__main__":
    main()
