"""fp32 ONNX -> int8 ONNX with ONNX Runtime static QDQ quantization, and how far int8 agrees with fp32."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_serve.contract import CLASSIFIER_INPUT
from resnet_serve.model.agreement import logit_agreement
from resnet_serve.ort_session import onnx_logits


@dataclass(frozen=True)
class Agreement:
    """int8 against fp32 on the same images (real accuracy needs real weights and labelled data)."""

    images: int
    top1_agreement: float
    top5_overlap: float
    logit_correlation: float


def quantize_int8(fp32_model: Path, output: Path, calibration: np.ndarray) -> Path:
    """Static QDQ quantization (int8 weights per channel, uint8 activations, MinMax calibration).

    ``calibration`` is a preprocessed [N, 3, 224, 224] batch of representative images: a few hundred
    real photos of the serving domain are typical; even 32 give usable activation ranges.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {CLASSIFIER_INPUT: row[None]}

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: ORT's fast x86 int8 kernels
            weight_type=QuantType.QInt8,
        )
    return output


def agreement(fp32_model: Path, int8_model: Path, batch: np.ndarray) -> Agreement:
    """Top-1 agreement, top-5 overlap and logit correlation of int8 against fp32."""
    reference = onnx_logits(fp32_model, batch)
    quantized = onnx_logits(int8_model, batch)
    ranks = logit_agreement(reference, quantized)
    return Agreement(
        images=ranks.images,
        top1_agreement=ranks.top1_agreement,
        top5_overlap=ranks.top5_overlap,
        logit_correlation=float(np.corrcoef(reference.ravel(), quantized.ravel())[0, 1]),
    )
