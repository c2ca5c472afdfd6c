"""Builds what is missing: weights -> ONNX (checked against torch, state_dict beside it), and int8.

torch is imported only here and in weights/export, never on the serving path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from resnet_serve.contract import IMAGE_SIZE, ONNX_OPSET
from resnet_serve.preprocess import ImageError, preprocess_batch, preprocess_image
from resnet_serve.progress import say, step, warn

PARITY_SEED = 0


def parity_batch(images: Sequence[bytes]) -> tuple[np.ndarray, str]:
    """The batch the ONNX export is checked on: the given images, else a fixed random one."""
    if images:
        return np.stack([preprocess_image(image) for image in images]), f"{len(images)} real image(s)"
    batch = np.random.default_rng(PARITY_SEED).standard_normal((2, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return batch, "a fixed random batch (pass --check-image IMG to use a real image)"


def load_model(weights: str | Path | None, random_weights: bool, fallback_to_random: bool):
    """Load ResNet-50 weights; optionally fall back to random ones, loudly, when ImageNet's can't be had."""
    from resnet_serve.weights import WeightsError, load_resnet50, random_resnet50

    with step("Loading ResNet-50 weights"):
        try:
            loaded = load_resnet50(weights, random=random_weights)
        except WeightsError as exc:
            if not fallback_to_random or weights:
                raise
            warn(f"{exc}\nFalling back to a fixed-seed RANDOM ResNet-50: the predicted classes are MEANINGLESS.")
            loaded = random_resnet50()
    say(f"Weights: {loaded.source}" + ("" if loaded.meaningful else " -- the predicted classes are meaningless"))
    return loaded


def export_checked(loaded, output: Path, check_images: Sequence[bytes], opset: int) -> float:
    """Export ``loaded.model`` to ``output`` and check it against torch; returns the max logit diff."""
    import torch

    from resnet_serve.export import PARITY_TOLERANCE, check_parity, export_onnx

    with step(f"Exporting ONNX (opset {opset}) to {output}"):
        export_onnx(loaded.model, output, opset=opset)
        torch.save(loaded.model.state_dict(), output.with_suffix(".pt"))  # for the GPU (torch) classifier
    batch, what = parity_batch(check_images)
    with step(f"Checking ONNX Runtime against torch on {what}"):
        difference = check_parity(loaded.model, output, batch)
    say(f"Max abs logit difference: {difference:.3g} (limit {PARITY_TOLERANCE:g})")
    _sidecar(output).write_text(json.dumps({"weights": loaded.source, "max_abs_logit_diff": difference}) + "\n")
    return difference


def _sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def ensure_onnx(
    output: Path,
    weights: str | Path | None,
    random_weights: bool,
    check_images: Sequence[bytes] = (),
    opset: int = ONNX_OPSET,
    fallback_to_random: bool = False,
) -> Path:
    """Export unless ``output`` already holds an export of the same weights."""
    loaded = load_model(weights, random_weights, fallback_to_random)
    sidecar = _sidecar(output)
    if output.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()).get("weights") == loaded.source:
        say(f"Reusing {output} (exported earlier from the same weights)")
        return output
    export_checked(loaded, output, check_images, opset)
    return output


def decodable_batch(images: Sequence[bytes], what: str) -> np.ndarray:
    """The preprocessed batch of the images that decode; an ImageError when none does."""
    batch, errors = preprocess_batch(images)
    usable = [error is None for error in errors]
    if not any(usable):
        raise ImageError(f"none of the {what} images could be decoded")
    return batch[usable]


def export_int8(fp32: Path, calibration: Sequence[bytes], report: Sequence[bytes]) -> Path:
    """Quantize ``fp32`` to ``<stem>.int8.onnx``; print its agreement with fp32 on ``report``."""
    from resnet_serve.quantize import agreement, quantize_int8

    int8 = fp32.with_name(fp32.stem + ".int8.onnx")
    with step(f"Quantizing to int8 (static QDQ, {len(calibration)} calibration images) -> {int8}"):
        quantize_int8(fp32, int8, decodable_batch(calibration, "calibration"))
    if report:
        result = agreement(fp32, int8, decodable_batch(report, "report"))
        say(
            f"int8 vs fp32 on {result.images} image(s): top-1 agreement {result.top1_agreement:.1%}, "
            f"top-5 overlap {result.top5_overlap:.1%}, logit correlation {result.logit_correlation:.4f}"
        )
    return int8
