"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> [N, 3, 224, 224] on the GPU.

A thin shell over :class:`resnet_serve.preprocess_gpu.GpuPreprocessor`: the images of every request
in a dynamically batched execution decode together (nvJPEG), and each request's slice leaves by
DLPack with no host copy. Its instance group is KIND_CPU (UINT8 input) while it computes on CUDA.
"""

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import to_dlpack

from resnet_serve.model_params import bool_parameter, config_parameters, int_parameter
from resnet_serve.preprocess import ImageError, PreprocessOptions, rows_to_bytes
from resnet_serve.preprocess_gpu import GpuPreprocessor


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        defaults = PreprocessOptions()
        options = PreprocessOptions(
            max_image_bytes=int_parameter(params, "max_image_bytes", defaults.max_image_bytes),
            max_pixels=int_parameter(params, "max_pixels", defaults.max_pixels),
            exif_transpose=bool_parameter(params, "exif_transpose", defaults.exif_transpose),
            jpeg_draft=bool_parameter(params, "jpeg_draft", defaults.jpeg_draft),
        )
        dtype = torch.float16 if params.get("dtype", "fp16") == "fp16" else torch.float32
        self.preprocess = GpuPreprocessor(params.get("device", "cuda:0"), dtype, options)

    def execute(self, requests):
        images, counts, bad_input = [], [], {}
        for index, request in enumerate(requests):
            try:
                rows = rows_to_bytes(pb_utils.get_input_tensor_by_name(request, "INPUT_0").as_numpy())
            except ImageError as exc:
                rows, bad_input[index] = [], f"INPUT_0: {exc}"
            images.extend(rows)
            counts.append(len(rows))
        batch, errors = self.preprocess(images)
        torch.cuda.current_stream().synchronize()  # outputs leave by DLPack: finish writing them first
        responses, start = [], 0
        for index, count in enumerate(counts):
            failed = [f"image {i}: {e}" for i, e in enumerate(errors[start : start + count]) if e is not None]
            message = bad_input.get(index) or "; ".join(failed)
            if message:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
            else:
                output = pb_utils.Tensor.from_dlpack("OUTPUT_0", to_dlpack(batch[start : start + count]))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            start += count
        return responses
