"""torch -> ONNX, then a parity check of the ONNX model against torch with ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from resnet_serve.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT, IMAGE_SIZE, MAX_BATCH_SIZE, ONNX_OPSET
from resnet_serve.errors import ResnetServeError
from resnet_serve.ort_session import onnx_logits

PARITY_TOLERANCE = 1e-3  # max abs logit difference, fp32 torch vs fp32 ONNX Runtime


class ExportError(ResnetServeError):
    """Export or its parity check failed."""


def export_onnx(
    model: torch.nn.Module,
    path: Path | str,
    opset: int = ONNX_OPSET,
    max_batch: int = MAX_BATCH_SIZE,
    input_size: int = IMAGE_SIZE,
) -> Path:
    """Export to ONNX: input ``input`` FP32 [N, 3, S, S], output ``output`` [N, classes], dynamic N."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=[CLASSIFIER_INPUT],
            output_names=[CLASSIFIER_OUTPUT],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


def max_logit_difference(model: torch.nn.Module, onnx_path: Path | str, batch: np.ndarray) -> float:
    """Max abs difference between torch's and ONNX Runtime's logits on a [N, 3, S, S] batch."""
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    actual = onnx_logits(onnx_path, batch)
    return float(np.abs(actual - expected).max())


def check_parity(
    model: torch.nn.Module, onnx_path: Path | str, batch: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> float:
    """Raise ExportError when the ONNX model's logits differ from torch's by more than ``tolerance``."""
    difference = max_logit_difference(model, onnx_path, batch)
    if not difference <= tolerance:
        raise ExportError(
            f"ONNX logits differ from torch by {difference:.3g} (> {tolerance:g}): {onnx_path} is not trustworthy"
        )
    return difference
