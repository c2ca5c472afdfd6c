"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> [N, 3, S, S] on the GPU.

A thin shell over :class:`resnet_serve.images.preprocess_gpu.GpuPreprocessor`: the images of every request
in a dynamically batched execution decode together (nvJPEG), and each request's slice leaves by
DLPack with no host copy. Its instance groups are KIND_CPU (UINT8 input), one per GPU (gpu_placement).
"""

import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import to_dlpack

from resnet_serve.batching import gather_requests, request_errors, responses
from resnet_serve.images.preprocess_gpu import GpuPreprocessor
from resnet_serve.model_params import config_parameters, cuda_device, tensor_names, torch_dtype_parameter
from resnet_serve.torch_classifier import finish, unless_out_of_memory


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        self.preprocess = GpuPreprocessor.for_model(params, cuda_device(args), torch_dtype_parameter(params))

    def execute(self, requests):
        return unless_out_of_memory(pb_utils, requests, self._execute)

    def _execute(self, requests):
        options = self.preprocess.options
        gathered = gather_requests(pb_utils, requests, self.input_name, self.lengths_name, options)
        batch, image_errors = self.preprocess(gathered.images, gathered.infos)
        finish(self.preprocess.device)  # outputs leave by DLPack: finish writing them first
        errors = request_errors(gathered, image_errors)
        return responses(pb_utils, self.output_name, batch, gathered.slices, errors, as_tensor=_dlpack_tensor)


def _dlpack_tensor(name, tensor):
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(tensor.contiguous()))
