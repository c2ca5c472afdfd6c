"""ONNX Runtime sessions for the CPU classifier, configured in one place."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def create_session(
    model_file: Path | str, intra_op_threads: int = 0, inter_op_threads: int = 0
) -> ort.InferenceSession:
    """A CPU inference session with full graph optimisation; 0 threads lets ORT choose."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    # Idle ORT threads would otherwise spin and steal the cores that image decoding needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
