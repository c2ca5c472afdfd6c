"""Triton Python-backend model: FP32 [N, 3, S, S] -> FP32 [N, classes] logits with OpenVINO on the CPU.

The precision (fp32, bf16 or int8) was resolved when the repository was written and comes as a
parameter; a CPU that cannot run it fails the load with a clear error instead of running another one.
The requests of one dynamically batched execution run together, at most ``max_run_batch`` images per
call; every batch size up to that runs once at load, so serving memory does not grow afterwards.
"""

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from resnet_serve.batching import request_slices, responses
from resnet_serve.model_params import config_parameters, tensor_names
from resnet_serve.openvino_classifier import served_classifier


class TritonPythonModel:
    def initialize(self, args):
        (self.input_name,), (self.output_name,) = tensor_names(args)
        version = Path(args["model_repository"]) / args["model_version"]
        self.classify = served_classifier(version, config_parameters(args))
        pb_utils.Logger.log_info(f"{args['model_name']}: OpenVINO {self.classify.describe()}")

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        logits = self.classify(np.concatenate(inputs) if len(inputs) > 1 else inputs[0])
        return responses(pb_utils, self.output_name, logits, request_slices([len(batch) for batch in inputs]))
