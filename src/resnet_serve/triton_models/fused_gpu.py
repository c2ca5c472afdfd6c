"""Triton Python-backend model: the whole ensemble in one GPU process (`repo --profile fused`).

Same contract as the seed's ensemble (``ensemble_python_resnet50``, INPUT UINT8 [-1] -> OUTPUT FP32
[1000]); nvJPEG preprocess and the CUDA-graph classifier share one CUDA context and one Python hop,
which the two-step ensemble pays twice (benchmarks/RESULTS.md measures both).
"""

from pathlib import Path

import torch
import triton_python_backend_utils as pb_utils

from resnet_serve.model_params import bool_parameter, config_parameters, int_parameter
from resnet_serve.preprocess import ImageError, PreprocessOptions, rows_to_bytes
from resnet_serve.preprocess_gpu import GpuPreprocessor
from resnet_serve.torch_classifier import GraphedClassifier, load_state_dict_model


class TritonPythonModel:
    def initialize(self, args):
        params = config_parameters(args)
        defaults = PreprocessOptions()
        options = PreprocessOptions(
            max_image_bytes=int_parameter(params, "max_image_bytes", defaults.max_image_bytes),
            max_pixels=int_parameter(params, "max_pixels", defaults.max_pixels),
            exif_transpose=bool_parameter(params, "exif_transpose", defaults.exif_transpose),
        )
        device = torch.device(params.get("device", "cuda:0"))
        dtype = torch.float16 if params.get("dtype", "fp16") == "fp16" else torch.float32
        self.preprocess = GpuPreprocessor(device, dtype, options)
        weights = Path(args["model_repository"]) / args["model_version"] / "model.pt"
        model = load_state_dict_model(str(weights), device, dtype)
        self.classifier = GraphedClassifier(
            model, device, dtype, use_graphs=bool_parameter(params, "cuda_graphs", True)
        )

    def execute(self, requests):
        images, counts, bad_input = [], [], {}
        for index, request in enumerate(requests):
            try:
                rows = rows_to_bytes(pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy())
            except ImageError as exc:
                rows, bad_input[index] = [], f"INPUT: {exc}"
            images.extend(rows)
            counts.append(len(rows))
        batch, errors = self.preprocess(images)
        logits = self.classifier(batch).cpu().numpy() if images else None
        responses, start = [], 0
        for index, count in enumerate(counts):
            failed = [f"image {i}: {e}" for i, e in enumerate(errors[start : start + count]) if e is not None]
            message = bad_input.get(index) or "; ".join(failed)
            if message:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
            else:
                output = pb_utils.Tensor("OUTPUT", logits[start : start + count])
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            start += count
        return responses
