"""What a Python-backend model reads from Triton's ``initialize(args)``: its config's parameters,
tensor names and device.

The model.py shells read their tensor names from their own config, as python_backend's examples
do, so the names are written in one place (:mod:`resnet_serve.contract`, via the repository writer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from resnet_serve.host import available_cores
from resnet_serve.options import parse_bool

if TYPE_CHECKING:
    import torch


class TensorNames(NamedTuple):
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def model_config(args: Mapping[str, Any]) -> dict:
    """The model config that Triton passes to ``initialize(args)``, as a dict."""
    return json.loads(args["model_config"])


def config_parameters(args: Mapping[str, Any]) -> dict[str, str]:
    """The ``parameters`` of the model config, as strings."""
    return {key: value["string_value"] for key, value in model_config(args).get("parameters", {}).items()}


def tensor_names(args: Mapping[str, Any]) -> TensorNames:
    """The model's input and output tensor names, in config order."""
    config = model_config(args)
    return TensorNames(
        tuple(tensor["name"] for tensor in config["input"]), tuple(tensor["name"] for tensor in config["output"])
    )


def int_parameter(params: Mapping[str, str], name: str, default: int) -> int:
    """An integer parameter, ``default`` when absent or empty."""
    value = params.get(name, "").strip()
    return int(value) if value else default


def bool_parameter(params: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no parameter ("true", "1", "yes", "on" are true), ``default`` when absent."""
    value = params.get(name, "").strip()
    return parse_bool(value) if value else default


def dtype_parameter(params: Mapping[str, str]) -> str:
    """The ``dtype`` parameter of a GPU model: fp16 (the default) or fp32."""
    return params.get("dtype", "fp16")


def torch_dtype(name: str) -> torch.dtype:
    """A GPU model's dtype, fp16 or fp32 (its ``dtype`` parameter, ``repo --dtype``), as torch's."""
    import torch  # GPU models only: the CPU models never import torch

    return torch.float16 if name == "fp16" else torch.float32


def torch_dtype_parameter(params: Mapping[str, str]) -> torch.dtype:
    """The ``dtype`` parameter of a GPU model as a torch dtype."""
    return torch_dtype(dtype_parameter(params))


def cuda_device(args: Mapping[str, Any]) -> torch.device:
    """This instance's GPU (:func:`resnet_serve.gpu_placement.instance_gpu`: Triton's device id for
    KIND_GPU, the ``gpu_<id>`` group for KIND_CPU), made the process's current device so that streams,
    CUDA graph captures and synchronizations that use the current device use this one."""
    import torch

    from resnet_serve.gpu_placement import instance_gpu

    device = torch.device("cuda", instance_gpu(args))
    torch.cuda.set_device(device)
    return device


def decode_pool(params: Mapping[str, str]) -> ThreadPoolExecutor:
    """The threads a model that takes encoded images decodes them on: its ``threads`` parameter, else
    one per core this process may use (host.available_cores)."""
    threads = int_parameter(params, "threads", 0) or available_cores()
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")
