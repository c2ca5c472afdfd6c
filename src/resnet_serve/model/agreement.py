"""How far a lower precision (bf16, int8) agrees with fp32 on the same images.

Real accuracy needs real weights and labelled data; what we can always report is agreement with the
fp32 model on the user's images: the largest logit difference relative to the image's largest fp32
logit, top-1 agreement and top-5 overlap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LogitAgreement:
    """``candidate`` logits against ``reference`` (fp32) logits of the same images."""

    images: int
    max_relative_diff: float  # max over images of max |candidate - reference| / max |reference|
    top1_agreement: float
    top5_overlap: float

    def summary(self, what: str) -> str:
        return (
            f"{what} vs fp32 on {self.images} image(s): max logit difference {self.max_relative_diff:.2%} of the "
            f"largest logit, top-1 agreement {self.top1_agreement:.1%}, top-5 overlap {self.top5_overlap:.1%}"
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def logit_agreement(reference: np.ndarray, candidate: np.ndarray) -> LogitAgreement:
    """Agreement of two [N, classes] logit arrays, ``reference`` being fp32."""
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"need two [N, classes] arrays of one shape, got {reference.shape} and {candidate.shape}")
    scale = np.maximum(np.abs(reference).max(axis=1), np.finfo(np.float32).tiny)
    relative = np.abs(candidate - reference).max(axis=1) / scale
    top5_ref = np.argsort(-reference, axis=1)[:, :5]
    top5 = np.argsort(-candidate, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5, strict=True)]
    return LogitAgreement(
        images=len(reference),
        max_relative_diff=float(relative.max()),
        top1_agreement=float(np.mean(top5_ref[:, 0] == top5[:, 0])),
        top5_overlap=float(np.mean(overlap)),
    )


def report_openvino_precisions(fp32_model: Path, int8_model: Path | None, batch: np.ndarray, what: str) -> None:
    """Print OpenVINO bf16 (where the CPU has it) and int8 (when given) against OpenVINO fp32 on ``batch``."""
    from resnet_serve.openvino_classifier import cpu_capabilities
    from resnet_serve.progress import say

    candidates = [("bf16", fp32_model)] if "BF16" in cpu_capabilities() else []
    candidates += [("int8", int8_model)] if int8_model is not None else []
    if not candidates:
        return
    reference = openvino_logits(fp32_model, "fp32", batch)  # once for both
    for precision, model_file in candidates:
        result = logit_agreement(reference, openvino_logits(model_file, precision, batch))
        say(result.summary(f"OpenVINO {precision} ({what})"))


def openvino_agreement(fp32_model: Path, model_file: Path, precision: str, batch: np.ndarray) -> LogitAgreement:
    """OpenVINO at ``precision`` on ``model_file`` against OpenVINO fp32 on ``fp32_model``, on a preprocessed batch."""
    return logit_agreement(openvino_logits(fp32_model, "fp32", batch), openvino_logits(model_file, precision, batch))


def openvino_logits(model_file: Path, precision: str, batch: np.ndarray) -> np.ndarray:
    """Logits of OpenVINO at ``precision`` on ``model_file`` for a preprocessed batch."""
    from resnet_serve.openvino_classifier import OpenVinoClassifier

    return OpenVinoClassifier(model_file=model_file, precision=precision)(batch)
