"""ResNet-50 on a CUDA GPU with torch: fp16, channels_last, one CUDA graph per batch-size bucket.

Batches are padded up to the next bucket and replayed from a graph captured at load time, so live
traffic never triggers cuDNN autotuning or per-layer kernel launches from Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from resnet_serve.aoti import COMPILED_FROM, PACKAGE_FILE, built_from, load_if_fits
from resnet_serve.contract import IMAGE_SIZE, NUM_CLASSES
from resnet_serve.model_card import DEFAULT_ARCH

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EAGER = "model.pt, eager"  # what an instance serves without a compiled package that fits


class Loaded(NamedTuple):
    """What an instance's classifier runs, for the server's log."""

    text: str
    warning: bool = False  # a compiled package was there and not used


def finish(device: torch.device) -> None:
    """Wait until ``device`` has run what its current stream holds, the calling thread asleep.

    ``Stream.synchronize`` and ``.cpu()`` wait as the CUDA context schedules its host threads, which
    spins a core while a process has fewer contexts than the host has cores: each of 8 instances on a
    16-core H200 host kept a core busy under load (benchmarks/RESULTS.md). An event made with
    ``blocking=True`` lets the thread sleep until the GPU signals it.
    """
    event = torch.cuda.Event(blocking=True)
    event.record(torch.cuda.current_stream(device))
    event.synchronize()


OUT_OF_MEMORY = "the GPU ran out of memory for this batch; send the request again (fewer images fit sooner)"


def unless_out_of_memory(pb_utils, requests, execute: Callable[[Sequence], list]) -> list:
    """``execute(requests)``, or, if the GPU runs out of memory, the same error for every request of the
    batch as UNAVAILABLE (the server's trouble and retryable: 503 over HTTP, not the client's 400 nor
    an INTERNAL that proxies take for a broken backend); the cache is emptied and the instance serves on.
    ``pb_utils`` is the Python backend's module."""
    try:
        return execute(requests)
    except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError from 2.5 only; we allow 2.4)
        pass
    torch.cuda.empty_cache()  # here, not in the except block, whose traceback still holds the batch's tensors
    error = pb_utils.TritonError(OUT_OF_MEMORY, pb_utils.TritonError.UNAVAILABLE)
    return [pb_utils.InferenceResponse(error=error) for _ in requests]


def load_state_dict_model(
    weights_file: str,
    device: torch.device,
    dtype: torch.dtype,
    arch: str = DEFAULT_ARCH,
    num_classes: int = NUM_CLASSES,
) -> torch.nn.Module:
    """torchvision's ``arch`` with a state_dict from ``weights_file``, in eval mode on ``device``.

    BatchNorm stays: folding it into the convolutions measured 11% slower with cuDNN on an H100
    (benchmarks/RESULTS.md).
    """
    from torchvision.models import get_model

    model = get_model(arch, weights=None, num_classes=num_classes)
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    return model.eval().to(device=device, dtype=dtype, memory_format=torch.channels_last)


def set_kernel_choice(deterministic: bool) -> None:
    """How cuDNN picks this process's convolution kernels: by its heuristics, the same for a shape in
    every process (deterministic), or by timing candidates at load, which may pick others in each
    instance (the same image then gets logits that differ in their last bits, issue 28). On one H200,
    4 processes timing kernels gave 3 and 4 different answers at buckets 1 and 64, heuristics one
    answer at every bucket, at no measured cost: 16,847 against 16,968 img/s alone at batch 256,
    served 8,159 against 7,815 (1 image per request, 512 in flight; benchmarks/RESULTS.md)."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


class GraphedClassifier:
    """Logits for [N, 3, S, S] inputs of any dtype or device; fp32 [N, classes] on the GPU.

    With a ``compiled`` model (the AOTInductor package, aoti.py), batches of ``compiled_from`` images
    or more run it as they are, and smaller ones replay the eager model's CUDA graphs: the package cannot
    be captured in a CUDA graph (its runner waits on events, "operation not permitted when stream is
    capturing"), and without one its kernel launches cost more than it saves on small batches."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, use_graphs: bool = True,
                 input_size: int = IMAGE_SIZE, deterministic: bool = True, compiled: Callable | None = None,
                 compiled_from: int = COMPILED_FROM):  # fmt: skip
        self.model, self.device, self.dtype, self.input_size = model, device, dtype, input_size
        self.buckets = sorted(buckets)
        self.compiled, self.compiled_from = compiled, compiled_from
        self.loaded = Loaded("the model given")  # what it runs, for the server's log (log_loaded)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        set_kernel_choice(deterministic)
        if use_graphs:
            self._capture()

    def _static_input(self, batch: int) -> torch.Tensor:
        shape = (batch, 3, self.input_size, self.input_size)
        return torch.randn(shape, device=self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)

    def _graphed_buckets(self) -> list[int]:
        """The buckets the eager model runs: every one, or with a compiled model those that batches under
        ``compiled_from`` are padded to."""
        if self.compiled is None:
            return self.buckets
        return [b for b in self.buckets if b <= self.bucket(self.compiled_from - 1)]

    @torch.inference_mode()
    def _capture(self) -> None:
        """Tune cuDNN and capture each bucket the eager model runs once (largest first, one memory pool).

        Everything runs with ``self.device`` current and on streams of that device: ``torch.cuda.graph``
        captures on a stream of the *current* device by default, so capturing a model on cuda:1 while
        cuda:0 is current invalidates the capture (cudaErrorStreamCaptureInvalidated, seen on 2 GPUs).
        """
        with torch.cuda.device(self.device):
            pool = None
            warmup, capture = torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)
            warmup.wait_stream(torch.cuda.current_stream(self.device))
            for batch in sorted(self._graphed_buckets(), reverse=True):
                static_input = self._static_input(batch)
                with torch.cuda.stream(warmup):
                    for _ in range(3):  # warm-up: cuDNN picks its algorithms here, not on live traffic
                        self.model(static_input)
                torch.cuda.current_stream(self.device).wait_stream(warmup)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=capture):
                    static_output = self.model(static_input)
                pool = graph.pool()
                self.graphs[batch] = (graph, static_input, static_output)
            torch.cuda.synchronize(self.device)
            # Give back what the warm-up left cached (eager activations, cuDNN's trial workspaces): the
            # graphs keep their own pool, and a GPU holds several instances (repository.py), each a copy.
            torch.cuda.empty_cache()

    def bucket(self, batch: int) -> int:
        return next((b for b in self.buckets if b >= batch), self.buckets[-1])

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.device, non_blocking=True)
        largest = self.buckets[-1]  # also the compiled model's largest batch (aoti.compile_on_gpu)
        with torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext():
            outputs = [self._run(inputs[start : start + largest]) for start in range(0, len(inputs), largest)]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None and len(chunk) >= self.compiled_from:
            return self.compiled(self._model_input(chunk)).float()
        if not self.graphs:
            return self.model(self._model_input(chunk)).float()
        graph, static_input, static_output = self.graphs[self.bucket(len(chunk))]
        static_input[: len(chunk)].copy_(chunk)
        graph.replay()
        return static_output[: len(chunk)].to(torch.float32, copy=True)  # the graph reuses it

    def _model_input(self, chunk: torch.Tensor) -> torch.Tensor:
        return chunk.to(self.dtype).contiguous(memory_format=torch.channels_last)


def instance_classifier(args: Mapping[str, Any]) -> GraphedClassifier:
    """The classifier of a Triton model instance: its version's ``model.pt`` on the instance's device,
    built as the config's ``arch``, ``num_classes`` and ``input_size`` parameters say (the model card's),
    in the config's ``dtype``, with CUDA graphs unless ``cuda_graphs`` is false and cuDNN's kernels
    chosen by timing where ``deterministic`` is false; and the compiled ``model.pt2`` beside it for
    large batches, where there is one that fits (compiled_model)."""
    from resnet_serve.model_params import (
        bool_parameter,
        config_parameters,
        cuda_device,
        dtype_parameter,
        int_parameter,
        torch_dtype_parameter,
    )

    params = config_parameters(args)
    device, dtype = cuda_device(args), torch_dtype_parameter(params)
    weights = Path(args["model_repository"]) / args["model_version"] / "model.pt"
    arch, classes = params.get("arch", DEFAULT_ARCH), int_parameter(params, "num_classes", NUM_CLASSES)
    input_size = int_parameter(params, "input_size", IMAGE_SIZE)
    compiled, loaded = compiled_model(weights, device, arch=arch, num_classes=classes,
                                      dtype=dtype_parameter(params), input_size=input_size)  # fmt: skip
    model = load_state_dict_model(str(weights), device, dtype, arch, classes)  # small batches: its CUDA graphs
    classifier = GraphedClassifier(model, device, dtype, use_graphs=bool_parameter(params, "cuda_graphs", True),
                                   input_size=input_size, deterministic=bool_parameter(params, "deterministic", True),
                                   compiled=compiled)  # fmt: skip
    classifier.loaded = loaded
    return classifier


def compiled_model(weights: Path, device: torch.device, **built_as) -> tuple[Callable | None, Loaded]:
    """The AOTInductor package beside ``weights`` where there is one built from them as ``built_as``
    says (aoti.built_from) for this GPU and torch (else None: the eager model is served), and what is served."""
    package = weights.with_name(PACKAGE_FILE)
    if not package.exists():
        return None, Loaded(f"{EAGER} (no {PACKAGE_FILE})")
    model, loaded = load_if_fits(package, device, built_from(weights, **built_as))
    if model is None:
        return None, Loaded(f"{EAGER}, not {PACKAGE_FILE}: {loaded}", warning=True)
    return model, Loaded(f"{loaded}, for batches of {COMPILED_FROM}+; smaller ones: {EAGER}")


def log_loaded(pb_utils, model_name: str, classifier: GraphedClassifier) -> None:
    """Say in the server's log what the instance serves, as a warning where a compiled package was left out."""
    log = pb_utils.Logger.log_warn if classifier.loaded.warning else pb_utils.Logger.log_info
    log(f"{model_name}: classifier {classifier.loaded.text}")
