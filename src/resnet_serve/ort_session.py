"""ONNX Runtime on the CPU for the classifier, configured in one place."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet_serve.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT
from resnet_serve.run_batches import DEFAULT_MAX_RUN_BATCH, run_in_batches

if TYPE_CHECKING:
    import onnxruntime as ort


def create_session(
    model_file: Path | str, intra_op_threads: int = 0, inter_op_threads: int = 0
) -> ort.InferenceSession:
    """A CPU inference session with full graph optimisation; 0 threads lets ORT choose."""
    import onnxruntime as ort  # here, so that importing the default above costs nothing

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    # Thread spinning stays on: turning it off (to leave the cores to image decoding) measured 35% slower
    # at batch 1 and 11% at batch 8 for fp32 on 2 cores.
    # Memory patterns off: ORT caches one pre-planned block per input shape, so every new batch size
    # grew the arena again (+40% RSS over 1..32 seen twice); without them the arena stays at the
    # largest batch's working set, at the same speed within this machine's noise.
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])


class OrtClassifier:
    """ResNet-50 logits from an ONNX model, at most ``max_run_batch`` images per ONNX Runtime call.

    Capping the call size bounds the arena whatever batch Triton forms (on the CPU the throughput
    per image is flat beyond ~8 images), and :meth:`warm_up` grows it to that bound at load time,
    so serving memory stops growing after the first few batches.
    """

    def __init__(self, session: ort.InferenceSession, max_run_batch: int = DEFAULT_MAX_RUN_BATCH):
        if max_run_batch < 1:
            raise ValueError(f"max_run_batch must be at least 1, not {max_run_batch}")
        self.session = session
        self.max_run_batch = max_run_batch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return run_in_batches(self._run, images, self.max_run_batch)

    def _run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([CLASSIFIER_OUTPUT], {CLASSIFIER_INPUT: images})[0]

    def warm_up(self) -> None:
        """Run batches of max_run_batch, half of it, ... 1 image(s) of zeros."""
        input_meta = self.session.get_inputs()[0]
        shape = [dim if isinstance(dim, int) else 1 for dim in input_meta.shape[1:]]
        dtype = np.float16 if input_meta.type == "tensor(float16)" else np.float32
        zeros = np.zeros([self.max_run_batch, *shape], dtype)
        size = self.max_run_batch
        while size >= 1:
            self._run(zeros[:size])
            size //= 2


def onnx_logits(model_file: Path | str, images: np.ndarray) -> np.ndarray:
    """Logits of the ONNX model on a preprocessed [N, 3, 224, 224] batch, in a new session."""
    return OrtClassifier(create_session(model_file))(images)
