"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> [N, 3, 224, 224] on the GPU.

A thin shell over :class:`resnet_serve.preprocess_gpu.GpuPreprocessor`: the images of every request
in a dynamically batched execution decode together (nvJPEG), and each request's slice leaves by
DLPack with no host copy. Its instance group is KIND_CPU (UINT8 input) while it computes on CUDA.
"""

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import to_dlpack

from resnet_serve.batching import gather_images, request_errors
from resnet_serve.model_params import config_parameters, preprocess_options, torch_dtype_parameter
from resnet_serve.preprocess_gpu import GpuPreprocessor


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        dtype = torch_dtype_parameter(params)
        self.preprocess = GpuPreprocessor(params.get("device", "cuda:0"), dtype, preprocess_options(params))

    def execute(self, requests):
        gathered = gather_images(requests, _image_tensor, "INPUT_0", self.preprocess.options.max_request_bytes)
        batch, image_errors = self.preprocess(gathered.images)
        torch.cuda.current_stream().synchronize()  # outputs leave by DLPack: finish writing them first
        responses = []
        for where, error in zip(gathered.slices, request_errors(gathered, image_errors), strict=True):
            if error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
            else:
                output = pb_utils.Tensor.from_dlpack("OUTPUT_0", to_dlpack(batch[where]))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses


def _image_tensor(request):
    return pb_utils.get_input_tensor_by_name(request, "INPUT_0").as_numpy()
