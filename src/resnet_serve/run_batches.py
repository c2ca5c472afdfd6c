"""What the CPU classifiers (ONNX Runtime, OpenVINO) share: at most ``max_run_batch`` images a call.

Capping the call size bounds the runtime's memory whatever batch Triton forms (on the CPU the
throughput per image is flat beyond ~8 images); the classifiers run those sizes once at load.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_MAX_RUN_BATCH = 32


def run_in_batches(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, max_run_batch: int) -> np.ndarray:
    """``run`` on consecutive slices of at most ``max_run_batch`` images, results concatenated."""
    if len(images) <= max_run_batch:
        return run(images)
    return np.concatenate(
        [run(images[start : start + max_run_batch]) for start in range(0, len(images), max_run_batch)]
    )
