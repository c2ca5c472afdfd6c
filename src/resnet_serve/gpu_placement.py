"""Which GPU each model instance runs on, in one place (no torch: the repository writer uses it on CPU).

A GPU repository serves on every GPU it is given (default: all visible), one preprocess+classifier
pipeline per GPU. The classifier's instance group is KIND_GPU, so Triton places its instances and
tells each its device id. The preprocess and fused models take UINT8 input and run in KIND_CPU
groups (README), where Triton gives no GPU: they get one KIND_CPU group per GPU, named
``gpu_<id>``, and each instance reads its GPU back from its own instance name (``gpu_<id>_<k>``).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

GROUP_PREFIX = "gpu_"
_INSTANCE_NAME = re.compile(rf"{GROUP_PREFIX}(\d+)_\d+")


def visible_gpu_count(env: Mapping[str, str] | None = None) -> int:
    """GPUs a CUDA process would see: $CUDA_VISIBLE_DEVICES, else the NVIDIA driver's list (Linux)."""
    visible = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() and device.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def parse_gpus(text: str) -> tuple[int, ...]:
    """``--gpus 0,1`` -> (0, 1): distinct device ids (numbers as CUDA counts the visible GPUs)."""
    try:
        gpus = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--gpus takes device numbers separated by commas, e.g. 0,1; got {text!r}") from None
    if not gpus or min(gpus) < 0 or len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus takes distinct device numbers >= 0, e.g. 0,1; got {text!r}")
    return gpus


def gpus_in_use(gpus: Sequence[int] = ()) -> tuple[int, ...]:
    """``gpus`` as given, or every visible GPU when empty (GPU 0 where none is visible, e.g. on CPU CI)."""
    return tuple(gpus) or tuple(range(max(visible_gpu_count(), 1)))


def group_name(gpu: int) -> str:
    """The KIND_CPU instance group whose instances compute on ``gpu``."""
    return f"{GROUP_PREFIX}{gpu}"


def instance_gpu(args: Mapping[str, str]) -> int:
    """The GPU of a Python-backend instance, from the ``args`` Triton passes to ``initialize``.

    KIND_GPU: Triton's device id. KIND_CPU: the id in the instance name ``gpu_<id>_<k>`` (see
    :func:`group_name`); 0 for an instance named otherwise.
    """
    if args.get("model_instance_kind") == "GPU":
        return int(args["model_instance_device_id"])
    match = _INSTANCE_NAME.fullmatch(args.get("model_instance_name", ""))
    return int(match[1]) if match else 0


# GPU memory an instance of the image-taking model may hold: 4.5 GiB per fused instance under load on
# an H100 (benchmarks/RESULTS.md, stop 21; 36.8 GiB for 8 on an H200 in stop 22), plus headroom (and
# the two-step profile's CUDA memory pool: tensor_pool_bytes).
GIB_PER_IMAGE_INSTANCE = 5.5


@functools.cache
def gpu_memory_gib() -> tuple[float, ...]:
    """Total memory (GiB) of every GPU the NVIDIA driver lists (nvidia-smi); () where it cannot tell."""
    try:
        query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
        result = subprocess.run(query, capture_output=True, text=True, timeout=30)
        return tuple(int(mib) / 1024 for mib in result.stdout.split()) if result.returncode == 0 else ()
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return ()


def image_instances_for(memory_gib: Sequence[float], most: int) -> int:
    """``most`` instances per GPU, or as many as the smallest GPU holds (at least one)."""
    if not memory_gib:
        return most
    return max(1, min(most, int(min(memory_gib) // GIB_PER_IMAGE_INSTANCE)))


# CUDA memory pool per GPU for repositories whose steps pass GPU tensors (the two-step profile): the
# preprocessed batches waiting for the classifier live there, and once it is full Triton copies them
# through the host. One H200, 8 images/request: with 1 GiB, 9,574 img/s at 256 in flight fell to 7,219
# at 512 (512 x 8 fp16 images of 301 KB: 1.2 GB waiting); with 4 GiB, 9,864 and 9,933
# (benchmarks/RESULTS.md, issue 30). GPUs under 64 GiB keep 1 GiB (not measured there).
LARGE_TENSOR_POOL_BYTES, SMALL_TENSOR_POOL_BYTES = 4 << 30, 1 << 30


def tensor_pool_bytes(passes_gpu_tensors: bool, memory_gib: Sequence[float] | None = None) -> int:
    """The CUDA memory pool per GPU for a repository: none unless its steps pass GPU tensors, else by the
    smallest GPU's memory in GiB (``memory_gib``; None: this machine's, gpu_memory_gib)."""
    if not passes_gpu_tensors:
        return 0
    memory_gib = gpu_memory_gib() if memory_gib is None else memory_gib
    return LARGE_TENSOR_POOL_BYTES if memory_gib and min(memory_gib) >= 64 else SMALL_TENSOR_POOL_BYTES


def memory_pool_args(gpus: Sequence[int], pool_bytes: int) -> list[str]:
    """tritonserver's CUDA memory pool flag for each GPU that passes tensors between steps."""
    return [f"--cuda-memory-pool-byte-size={gpu}:{pool_bytes}" for gpu in gpus] if pool_bytes else []
