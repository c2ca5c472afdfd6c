"""Triton Python-backend model: the whole ensemble in one CPU process (`repo --profile fused`).

Same contract as the seed's ensemble (``ensemble_python_resnet50``, INPUT UINT8 [-1] -> OUTPUT FP32
[classes]); each execution decodes its batch (images.preprocess, on a thread pool) and classifies it
with OpenVINO in the same process, with no second stub and no preprocessed tensor crossing shared
memory, which the two-step ensemble pays per request (benchmarks/RESULTS.md measures both).
"""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from resnet_serve.batching import gather_requests, request_errors, responses
from resnet_serve.images.preprocess import PreprocessOptions, preprocess_batch
from resnet_serve.model_params import config_parameters, decode_pool, tensor_names
from resnet_serve.openvino_classifier import served_classifier


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        self.options = PreprocessOptions.from_parameters(params)
        self.pool = decode_pool(params)
        version = Path(args["model_repository"]) / args["model_version"]
        self.classify = served_classifier(version, params, threads="classifier_threads")
        pb_utils.Logger.log_info(f"{args['model_name']}: OpenVINO {self.classify.describe()}")

    def execute(self, requests):
        gathered = gather_requests(pb_utils, requests, self.input_name, self.lengths_name, self.options)
        batch, image_errors = preprocess_batch(
            gathered.images, self.options, self.pool, gathered.infos, gathered.owners
        )
        logits = self.classify(batch) if gathered.images else None
        errors = request_errors(gathered, image_errors)
        return responses(pb_utils, self.output_name, logits, gathered.slices, errors)

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
