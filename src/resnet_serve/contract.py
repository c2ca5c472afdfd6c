"""The ensemble's contract, in one place: model and tensor names, sizes, classes and labels.

The seed's ``client.py`` sends ``INPUT`` (UINT8 [1, L], one encoded image) to
``ensemble_python_resnet50`` and reads ``OUTPUT`` (FP32 [1, 1000]); every name here keeps it working.
Server side (repository, Triton models) and client side (client, bench) both import this module, so
it imports nothing heavy: no Pillow, no protobuf, no torch.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# The ensemble, as the seed's client calls it.
ENSEMBLE_NAME = "ensemble_python_resnet50"
ENSEMBLE_INPUT = "INPUT"  # UINT8 [N, L]: encoded images, one per row
# Optional INT64 [N, 1]: each row's image length, so that zero padding is never decoded. Without it (the
# seed's client) a row ends where its image's own structure ends (resnet_serve.images.checks).
ENSEMBLE_LENGTHS = "INPUT_LENGTHS"
ENSEMBLE_OUTPUT = "OUTPUT"  # FP32 [N, NUM_CLASSES] logits
MAX_BATCH_SIZE = 256
# The default limit on one request's INPUT tensor; our gRPC clients' send cap follows it.
DEFAULT_MAX_REQUEST_BYTES = 256 << 20

# Step 1: the preprocess model.
PREPROCESS_NAME = "preprocess"
PREPROCESS_INPUT = "INPUT_0"
PREPROCESS_LENGTHS = "INPUT_LENGTHS_0"
PREPROCESS_OUTPUT = "OUTPUT_0"
PREPROCESSED_TENSOR = "preprocessed_image"  # the ensemble's name for the tensor between the steps

# Step 2: the classifier (its ONNX export, TensorRT plan and Python models use the same names).
CLASSIFIER_INPUT = "input"  # [N, 3, IMAGE_SIZE, IMAGE_SIZE], ImageNet-normalized
CLASSIFIER_OUTPUT = "output"  # FP32 [N, NUM_CLASSES]
ONNX_OPSET = 18

# torchvision's ImageNet eval transform: Resize(RESIZE_SIZE) -> CenterCrop(IMAGE_SIZE) -> Normalize.
RESIZE_SIZE = 256
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NUM_CLASSES = 1000
LABELS_FILE = "labels.txt"


@cache
def labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, upper case as in the seed (index 504 is ``COFFEE MUG``)."""
    return tuple(resources.files("resnet_serve").joinpath(LABELS_FILE).read_text().splitlines())
