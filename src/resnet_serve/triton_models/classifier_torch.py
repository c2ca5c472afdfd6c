"""Triton Python-backend model: [N, 3, S, S] -> FP32 [N, classes] logits with PyTorch on the GPU.

A thin shell over :class:`resnet_serve.torch_classifier.GraphedClassifier` (fp16, channels_last,
CUDA graphs per batch bucket, captured at load). Inputs arrive on the GPU by DLPack (the config sets
FORCE_CPU_ONLY_INPUT_TENSORS=no); every request of an execution runs as one batch.
"""

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

from resnet_serve.batching import request_slices, responses
from resnet_serve.model_params import tensor_names
from resnet_serve.torch_classifier import finish, instance_classifier, log_loaded, unless_out_of_memory


class TritonPythonModel:
    def initialize(self, args):
        (self.input_name,), (self.output_name,) = tensor_names(args)
        self.classifier = instance_classifier(args)
        log_loaded(pb_utils, args["model_name"], self.classifier)

    def execute(self, requests):
        return unless_out_of_memory(pb_utils, requests, self._execute)

    def _execute(self, requests):
        inputs = [self._input(request) for request in requests]
        logits = self.classifier(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
        finish(self.classifier.device)  # outputs leave by DLPack: finish writing them first
        slices = request_slices([len(batch) for batch in inputs])
        return responses(pb_utils, self.output_name, logits, slices, as_tensor=_dlpack_tensor)

    def _input(self, request):
        """A request's batch, moved to this instance's GPU: with several GPUs the ensemble may hand this
        instance the output of a preprocess instance on another GPU (Triton passes it where it is)."""
        tensor = from_dlpack(pb_utils.get_input_tensor_by_name(request, self.input_name).to_dlpack())
        return tensor.to(self.classifier.device)


def _dlpack_tensor(name, tensor):
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(tensor.contiguous()))
