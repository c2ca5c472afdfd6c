"""The seed example's preprocessing, reproduced for `repo --profile seed` (benchmark baseline only).

Behaves as python_backend's examples/preprocessing model.py: torchvision transforms built anew for
every request, squash Resize([224, 224]) (aspect ratio lost), the request's whole INPUT_0 opened as
one image without RGB conversion, one [1, 3, 224, 224] output per request.
"""

import io

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image
from torchvision import transforms

from resnet_serve.contract import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from resnet_serve.model_params import tensor_names


class TritonPythonModel:
    def initialize(self, args):
        (self.input_name, _lengths), (self.output_name,) = tensor_names(args)  # the seed reads one image

    def execute(self, requests):
        responses = []
        for request in requests:
            loader = transforms.Compose(
                [
                    transforms.Resize([IMAGE_SIZE, IMAGE_SIZE]),
                    transforms.CenterCrop(IMAGE_SIZE),
                    transforms.ToTensor(),
                    transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                ]
            )
            data = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            image = loader(Image.open(io.BytesIO(data.tobytes()))).unsqueeze(0).numpy()
            output = pb_utils.Tensor(self.output_name, image.astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
