"""Triton Python-backend model: [N, 3, 224, 224] -> FP32 [N, 1000] logits with PyTorch on the GPU.

A thin shell over :class:`resnet_serve.torch_classifier.GraphedClassifier` (fp16, channels_last,
CUDA graphs per batch bucket, captured at load). Inputs arrive on the GPU by DLPack (the config sets
FORCE_CPU_ONLY_INPUT_TENSORS=no); every request of an execution runs as one batch.
"""

from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

from resnet_serve.model_params import bool_parameter, config_parameters, torch_dtype_parameter
from resnet_serve.torch_classifier import GraphedClassifier, load_state_dict_model


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        device = torch.device("cuda", int(args.get("model_instance_device_id", 0)))
        dtype = torch_dtype_parameter(params)
        weights = Path(args["model_repository"]) / args["model_version"] / "model.pt"
        model = load_state_dict_model(str(weights), device, dtype)
        self.classifier = GraphedClassifier(
            model, device, dtype, use_graphs=bool_parameter(params, "cuda_graphs", True)
        )

    def execute(self, requests):
        inputs = [from_dlpack(pb_utils.get_input_tensor_by_name(r, "input").to_dlpack()) for r in requests]
        logits = self.classifier(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
        torch.cuda.current_stream().synchronize()  # outputs leave by DLPack: finish writing them first
        responses, start = [], 0
        for batch in inputs:
            stop = start + len(batch)
            output = pb_utils.Tensor.from_dlpack("output", to_dlpack(logits[start:stop].contiguous()))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            start = stop
        return responses
