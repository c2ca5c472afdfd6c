"""Triton Python-backend model: FP32 [N, 3, S, S] -> FP32 [N, classes] logits with ONNX Runtime.

Stands in for the onnxruntime_onnx backend on servers that lack it (the PyPI tritonserver). The
requests of one dynamically batched execution run together, at most ``max_run_batch`` images per
ONNX Runtime call; the session is warmed up at load so its memory does not grow while serving.
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from resnet_serve.batching import request_slices, responses
from resnet_serve.model_params import config_parameters, int_parameter, tensor_names
from resnet_serve.ort_session import OrtClassifier, create_session
from resnet_serve.run_batches import DEFAULT_MAX_RUN_BATCH


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        (self.input_name,), (self.output_name,) = tensor_names(args)
        model_file = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        session = create_session(
            model_file,
            intra_op_threads=int_parameter(params, "intra_op_threads", 0),
            inter_op_threads=int_parameter(params, "inter_op_threads", 0),
        )
        self.classify = OrtClassifier(session, int_parameter(params, "max_run_batch", DEFAULT_MAX_RUN_BATCH))
        self.classify.warm_up()

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        logits = self.classify(np.concatenate(inputs) if len(inputs) > 1 else inputs[0])
        return responses(pb_utils, self.output_name, logits, request_slices([len(batch) for batch in inputs]))
