"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> FP32 [N, 3, S, S] (S: the card's input size).

A thin shell over :mod:`resnet_serve.images.preprocess`. Each image is decoded on its own; an image that
fails gives its request an error naming the image, and the other requests of the batch go on.
"""

import triton_python_backend_utils as pb_utils

from resnet_serve.batching import gather_requests, request_errors, responses
from resnet_serve.images.preprocess import PreprocessOptions, preprocess_batch
from resnet_serve.model_params import config_parameters, decode_pool, tensor_names


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        self.options = PreprocessOptions.from_parameters(params)
        self.pool = decode_pool(params)

    def execute(self, requests):
        gathered = gather_requests(pb_utils, requests, self.input_name, self.lengths_name, self.options)
        batch, image_errors = preprocess_batch(
            gathered.images, self.options, self.pool, gathered.infos, gathered.owners
        )
        return responses(pb_utils, self.output_name, batch, gathered.slices, request_errors(gathered, image_errors))

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
