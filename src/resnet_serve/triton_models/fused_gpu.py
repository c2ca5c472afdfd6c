"""Triton Python-backend model: the whole ensemble in one GPU process (`repo --profile fused`).

Same contract as the seed's ensemble (``ensemble_python_resnet50``, INPUT UINT8 [-1] -> OUTPUT FP32
[1000]); nvJPEG preprocess and the CUDA-graph classifier share one CUDA context and one Python hop,
which the two-step ensemble pays twice (benchmarks/RESULTS.md measures both).
"""

import triton_python_backend_utils as pb_utils

from resnet_serve.batching import gather_images, request_errors, responses
from resnet_serve.model_params import config_parameters, tensor_names
from resnet_serve.preprocess import PreprocessOptions
from resnet_serve.preprocess_gpu import GpuPreprocessor
from resnet_serve.torch_classifier import instance_classifier


class TritonPythonModel:
    def initialize(self, args):
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        self.classifier = instance_classifier(args)
        params = config_parameters(args)
        options = PreprocessOptions.from_parameters(params)
        decoder = params.get("gpu_decoder", "auto")
        self.preprocess = GpuPreprocessor(self.classifier.device, self.classifier.dtype, options, decoder)
        self.preprocess.warm_up()  # before Triton calls the model ready

    def execute(self, requests):
        options = self.preprocess.options
        gathered = gather_images(
            requests, self._image_tensor, self.input_name, options, self._lengths, self.lengths_name
        )
        batch, image_errors = self.preprocess(gathered.images, gathered.infos)
        logits = self.classifier(batch).cpu().numpy() if gathered.images else None
        errors = request_errors(gathered, image_errors)
        return responses(pb_utils, self.output_name, logits, gathered.slices, errors)

    def _image_tensor(self, request):
        return pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()

    def _lengths(self, request):
        """The optional INT64 [N, 1] image lengths; None from a client of the seed's one-input contract."""
        tensor = pb_utils.get_input_tensor_by_name(request, self.lengths_name)
        return None if tensor is None else tensor.as_numpy()
