"""Builds what is missing: weights -> ONNX (checked against torch; state_dict and model card beside it), and int8.

torch is imported only here and in weights/export, never on the serving path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from resnet_serve.contract import NUM_CLASSES, ONNX_OPSET
from resnet_serve.images.preprocess import ImageError, PreprocessOptions, preprocess_batch, preprocess_image
from resnet_serve.model_card import DEFAULT_ARCH, INT8_SUFFIX, ModelCard, card_for, read_card, write_card
from resnet_serve.progress import say, step, warn

PARITY_SEED = 0


def parity_batch(images: Sequence[bytes], card: ModelCard | None = None) -> tuple[np.ndarray, str]:
    """The batch a model is checked on: the given images (prepared as ``card`` says), else a fixed random one."""
    card = card or ModelCard()
    if images:
        options = PreprocessOptions(**card.preprocess_fields())
        return np.stack([preprocess_image(image, options) for image in images]), f"{len(images)} real image(s)"
    size = card.input_size
    batch = np.random.default_rng(PARITY_SEED).standard_normal((2, 3, size, size), dtype=np.float32)
    return batch, "a fixed random batch; --check-image IMG uses a real image"


def load_model(
    *,
    arch: str = DEFAULT_ARCH,
    num_classes: int = NUM_CLASSES,
    labels: Sequence[str] = (),
    weights: str | Path | None = None,
    random_weights: bool = False,
    fallback_to_random: bool = False,
):
    """Load a classifier (resnet_serve.model.weights); optionally fall back to random weights, loudly, when
    torchvision's pretrained ones can't be had."""
    from resnet_serve.model.weights import WeightsError, random_model
    from resnet_serve.model.weights import load_model as load

    with step(f"Loading {arch} weights"):
        try:
            loaded = load(arch, num_classes=num_classes, labels=labels, weights=weights, random=random_weights)
        except WeightsError as exc:
            if not fallback_to_random or weights:
                raise
            warn(f"{exc}\nFalling back to a fixed-seed RANDOM {arch}: the predicted classes are MEANINGLESS.")
            loaded = random_model(arch, num_classes, labels)
    say(f"Weights: {loaded.source}" + ("" if loaded.meaningful else " -- the predicted classes are meaningless"))
    say(f"Model: {loaded.card.summary()}")
    return loaded


def _partial(path: Path) -> Path:
    """Where a file is written before it is renamed into place (same directory and suffix)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def export_checked(loaded, output: Path, check_images: Sequence[bytes], opset: int) -> float:
    """Export ``loaded.model`` to ``output`` (its state_dict to ``.pt`` and its card to ``.json``
    beside it) and check it against torch; returns the max logit difference.

    Every file is written under another name and renamed into place once checked: a file read
    meanwhile (or copied into a repository earlier) is never changed, and a failed export leaves
    the previous one as it was.
    """
    import torch

    from resnet_serve.model.export import PARITY_TOLERANCE, check_parity, export_onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    onnx, state = _partial(output), _partial(output.with_suffix(".pt"))
    try:
        with step(f"Exporting ONNX (opset {opset}) to {output}"):
            export_onnx(loaded.model, onnx, opset=opset, input_size=loaded.card.input_size)
            torch.save(loaded.model.state_dict(), state)  # for the GPU (torch) classifier
        batch, what = parity_batch(check_images, loaded.card)
        with step(f"Checking ONNX Runtime against torch on {what}"):
            difference = check_parity(loaded.model, onnx, batch)
        onnx.replace(output)
        state.replace(output.with_suffix(".pt"))
    finally:
        onnx.unlink(missing_ok=True)
        state.unlink(missing_ok=True)
    write_card(output, loaded.card)
    say(f"Max abs logit difference: {difference:.3g} (limit {PARITY_TOLERANCE:g})")
    return difference


def ensure_onnx(
    output: Path,
    loaded,
    check_images: Sequence[bytes] = (),
    opset: int = ONNX_OPSET,
) -> Path:
    """Export ``loaded`` unless ``output`` already holds an export of the same model and weights."""
    if output.is_file() and output.with_suffix(".pt").is_file() and read_card(output) == loaded.card:
        say(f"Reusing {output} (exported earlier from the same weights)")
        return output
    export_checked(loaded, output, check_images, opset)
    return output


def decodable_batch(images: Sequence[bytes], what: str, card: ModelCard | None = None) -> np.ndarray:
    """The preprocessed batch (as ``card`` says) of the images that decode; an ImageError when none does."""
    options = PreprocessOptions(**(card or ModelCard()).preprocess_fields())
    batch, errors = preprocess_batch(images, options)
    usable = [error is None for error in errors]
    if not any(usable):
        raise ImageError(f"none of the {what} images could be decoded")
    return batch[usable]


def export_int8(fp32: Path, calibration: Sequence[bytes], report: Sequence[bytes]) -> Path:
    """Quantize ``fp32`` to ``<stem>.int8.onnx`` (renamed into place once written, sharing fp32's
    card); print its agreement with fp32 on ``report``."""
    from resnet_serve.model.quantize import agreement, quantize_int8

    card = card_for(fp32)
    int8 = fp32.with_name(fp32.stem + INT8_SUFFIX + ".onnx")
    partial = _partial(int8)
    with step(f"Quantizing to int8 (static QDQ, {len(calibration)} calibration images) -> {int8}"):
        try:
            quantize_int8(fp32, partial, decodable_batch(calibration, "calibration", card))
            partial.replace(int8)
        finally:
            partial.unlink(missing_ok=True)
    if report:
        result = agreement(fp32, int8, decodable_batch(report, "report", card))
        say(
            f"int8 vs fp32 on {result.images} image(s): top-1 agreement {result.top1_agreement:.1%}, "
            f"top-5 overlap {result.top5_overlap:.1%}, logit correlation {result.logit_correlation:.4f}"
        )
    return int8
