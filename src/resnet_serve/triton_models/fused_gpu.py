"""Triton Python-backend model: the whole ensemble in one GPU process (`repo --profile fused`).

Same contract as the seed's ensemble (``ensemble_python_resnet50``, INPUT UINT8 [-1] -> OUTPUT FP32
[classes]); nvJPEG preprocess and the CUDA-graph classifier share one CUDA context and one Python hop,
which the two-step ensemble pays twice (benchmarks/RESULTS.md measures both).
"""

import triton_python_backend_utils as pb_utils

from resnet_serve.batching import gather_requests, request_errors, responses
from resnet_serve.images.preprocess_gpu import GpuPreprocessor
from resnet_serve.model_params import config_parameters, tensor_names
from resnet_serve.torch_classifier import finish, instance_classifier, log_loaded, unless_out_of_memory


class TritonPythonModel:
    def initialize(self, args):
        (self.input_name, self.lengths_name), (self.output_name,) = tensor_names(args)
        self.classifier = instance_classifier(args)
        log_loaded(pb_utils, args["model_name"], self.classifier)
        params = config_parameters(args)
        self.preprocess = GpuPreprocessor.for_model(params, self.classifier.device, self.classifier.dtype)

    def execute(self, requests):
        return unless_out_of_memory(pb_utils, requests, self._execute)

    def _execute(self, requests):
        options = self.preprocess.options
        gathered = gather_requests(pb_utils, requests, self.input_name, self.lengths_name, options)
        batch, image_errors = self.preprocess(gathered.images, gathered.infos)
        logits = None
        if gathered.images:
            logits = self.classifier(batch)
            finish(self.classifier.device)  # asleep, then a copy that need not wait
            logits = logits.cpu().numpy()
        errors = request_errors(gathered, image_errors)
        return responses(pb_utils, self.output_name, logits, gathered.slices, errors)
