"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> FP32 [N, 3, 224, 224].

A thin shell over :mod:`resnet_serve.preprocess`. Each image is decoded on its own; an image that
fails gives its request an error naming the image, and the other requests of the batch go on.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import triton_python_backend_utils as pb_utils

from resnet_serve.model_params import bool_parameter, config_parameters, int_parameter
from resnet_serve.preprocess import ImageError, PreprocessOptions, preprocess_requests, rows_to_bytes


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        defaults = PreprocessOptions()
        self.options = PreprocessOptions(
            max_image_bytes=int_parameter(params, "max_image_bytes", defaults.max_image_bytes),
            max_pixels=int_parameter(params, "max_pixels", defaults.max_pixels),
            exif_transpose=bool_parameter(params, "exif_transpose", defaults.exif_transpose),
            jpeg_draft=bool_parameter(params, "jpeg_draft", defaults.jpeg_draft),
        )
        threads = int_parameter(params, "threads", 0) or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")

    def execute(self, requests):
        images, bad_input = [], {}
        for index, request in enumerate(requests):
            try:
                images.append(rows_to_bytes(pb_utils.get_input_tensor_by_name(request, "INPUT_0").as_numpy()))
            except ImageError as exc:
                images.append([])
                bad_input[index] = f"INPUT_0: {exc}"
        results = preprocess_requests(images, self.options, self.pool)
        responses = []
        for index, result in enumerate(results):
            error = bad_input.get(index) or (result if isinstance(result, str) else None)
            if error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT_0", result)]))
        return responses

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
