"""Triton Python-backend model: encoded images (UINT8 [N, L]) -> [N, 3, 224, 224] on the GPU.

A thin shell over :class:`resnet_serve.preprocess_gpu.GpuPreprocessor`: the images of every request
in a dynamically batched execution decode together (nvJPEG), and each request's slice leaves by
DLPack with no host copy. Its instance groups are KIND_CPU (UINT8 input), one per GPU (gpu_placement).
"""

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import to_dlpack

from resnet_serve.batching import gather_images, request_errors, responses
from resnet_serve.model_params import config_parameters, cuda_device, tensor_names, torch_dtype_parameter
from resnet_serve.preprocess import PreprocessOptions
from resnet_serve.preprocess_gpu import GpuPreprocessor


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        options = PreprocessOptions.from_parameters(params)
        decoder = params.get("gpu_decoder", "auto")
        self.preprocess = GpuPreprocessor(cuda_device(args), torch_dtype_parameter(params), options, decoder)
        self.preprocess.warm_up()  # before Triton calls the model ready

    def execute(self, requests):
        options = self.preprocess.options
        gathered = gather_images(
            requests, self._image_tensor, self.input_name, options, self._lengths, self.lengths_name
        )
        batch, image_errors = self.preprocess(gathered.images, gathered.infos)
        torch.cuda.current_stream().synchronize()  # outputs leave by DLPack: finish writing them first
        errors = request_errors(gathered, image_errors)
        return responses(pb_utils, self.output_name, batch, gathered.slices, errors, as_tensor=_dlpack_tensor)

    def _image_tensor(self, request):
        return pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()

    def _lengths(self, request):
        """The optional INT64 [N, 1] image lengths; None from a client of the seed's one-input contract."""
        tensor = pb_utils.get_input_tensor_by_name(request, self.lengths_name)
        return None if tensor is None else tensor.as_numpy()


def _dlpack_tensor(name, tensor):
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(tensor.contiguous()))
