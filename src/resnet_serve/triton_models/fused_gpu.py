"""Triton Python-backend model: the whole ensemble in one GPU process (`repo --profile fused`).

Same contract as the seed's ensemble (``ensemble_python_resnet50``, INPUT UINT8 [-1] -> OUTPUT FP32
[1000]); nvJPEG preprocess and the CUDA-graph classifier share one CUDA context and one Python hop,
which the two-step ensemble pays twice (benchmarks/RESULTS.md measures both).
"""

from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils

from resnet_serve.batching import gather_images, request_errors
from resnet_serve.model_params import bool_parameter, config_parameters, preprocess_options, torch_dtype_parameter
from resnet_serve.preprocess_gpu import GpuPreprocessor
from resnet_serve.torch_classifier import GraphedClassifier, load_state_dict_model


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        device = torch.device(params.get("device", "cuda:0"))
        dtype = torch_dtype_parameter(params)
        self.preprocess = GpuPreprocessor(device, dtype, preprocess_options(params))
        weights = Path(args["model_repository"]) / args["model_version"] / "model.pt"
        model = load_state_dict_model(str(weights), device, dtype)
        self.classifier = GraphedClassifier(
            model, device, dtype, use_graphs=bool_parameter(params, "cuda_graphs", True)
        )

    def execute(self, requests):
        gathered = gather_images(requests, _image_tensor, "INPUT", self.preprocess.options.max_request_bytes)
        batch, image_errors = self.preprocess(gathered.images)
        logits = self.classifier(batch).cpu().numpy() if gathered.images else None
        responses = []
        for where, error in zip(gathered.slices, request_errors(gathered, image_errors), strict=True):
            if error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)))
            else:
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", logits[where])]))
        return responses


def _image_tensor(request):
    return pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
