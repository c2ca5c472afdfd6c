"""Reading a Triton model's config parameters inside a Python-backend model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resnet_serve.preprocess import PreprocessOptions

if TYPE_CHECKING:
    import torch


def config_parameters(args: Mapping[str, Any]) -> dict[str, str]:
    """The ``parameters`` of the model config that Triton passes to ``initialize(args)``."""
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def int_parameter(params: Mapping[str, str], name: str, default: int) -> int:
    """An integer parameter, ``default`` when absent or empty."""
    value = params.get(name, "").strip()
    return int(value) if value else default


def bool_parameter(params: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no parameter ("true", "1", "yes", "on" are true), ``default`` when absent."""
    value = params.get(name, "").strip().lower()
    return value in ("true", "1", "yes", "on") if value else default


def torch_dtype_parameter(params: Mapping[str, str]) -> torch.dtype:
    """The ``dtype`` parameter of a GPU model as a torch dtype: fp16 (the default) or fp32."""
    import torch  # GPU models only: the CPU models never import torch

    return torch.float16 if params.get("dtype", "fp16") == "fp16" else torch.float32


def preprocess_options(params: Mapping[str, str]) -> PreprocessOptions:
    """The preprocess options a repository wrote into a model's parameters (defaults elsewhere)."""
    defaults = PreprocessOptions()
    return PreprocessOptions(
        max_image_bytes=int_parameter(params, "max_image_bytes", defaults.max_image_bytes),
        max_request_bytes=int_parameter(params, "max_request_bytes", defaults.max_request_bytes),
        max_pixels=int_parameter(params, "max_pixels", defaults.max_pixels),
        exif_transpose=bool_parameter(params, "exif_transpose", defaults.exif_transpose),
        jpeg_draft=bool_parameter(params, "jpeg_draft", defaults.jpeg_draft),
    )
