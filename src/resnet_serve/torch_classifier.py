"""ResNet-50 on a CUDA GPU with torch: fp16, channels_last, one CUDA graph per batch-size bucket.

Batches are padded up to the next bucket and replayed from a graph captured at load time, so live
traffic never triggers cuDNN autotuning or per-layer kernel launches from Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode BatchNorm of a torchvision ResNet into the convolution before it.

    One kernel instead of two per layer, and the same function (up to float rounding).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(owner: torch.nn.Module, conv_name: str, bn_name: str) -> None:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(owner, bn_name, torch.nn.Identity())

    model.eval()
    fold(model, "conv1", "bn1")
    for module in model.modules():
        for index in (1, 2, 3):
            if hasattr(module, f"conv{index}") and hasattr(module, f"bn{index}") and module is not model:
                fold(module, f"conv{index}", f"bn{index}")
        downsample = getattr(module, "downsample", None)
        if isinstance(downsample, torch.nn.Sequential) and len(downsample) == 2:
            fold(downsample, "0", "1")
    return model


def load_state_dict_model(weights_file: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """torchvision's ResNet-50 with a state_dict from ``weights_file``, BatchNorm folded, on ``device``."""
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    model.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    return fold_batchnorm(model.eval()).to(device=device, dtype=dtype, memory_format=torch.channels_last)


class GraphedClassifier:
    """Logits for [N, 3, 224, 224] inputs of any dtype or device; fp32 [N, 1000] on the GPU."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, use_graphs: bool = True):  # fmt: skip
        self.model, self.device, self.dtype = model, device, dtype
        self.buckets = sorted(buckets)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        torch.backends.cudnn.benchmark = True
        if use_graphs:
            self._capture()

    def _static_input(self, batch: int) -> torch.Tensor:
        shape = (batch, 3, 224, 224)
        return torch.randn(shape, device=self.device).to(self.dtype).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _capture(self) -> None:
        """Tune cuDNN and capture every bucket once (largest first, sharing one memory pool)."""
        pool = None
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        for batch in sorted(self.buckets, reverse=True):
            static_input = self._static_input(batch)
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: cuDNN picks its algorithms here, not on live traffic
                    self.model(static_input)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                static_output = self.model(static_input)
            pool = graph.pool()
            self.graphs[batch] = (graph, static_input, static_output)
        torch.cuda.synchronize(self.device)

    def bucket(self, batch: int) -> int:
        return next((b for b in self.buckets if b >= batch), self.buckets[-1])

    @torch.inference_mode()
    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.device, non_blocking=True)
        if not self.graphs:
            return self.model(inputs.to(self.dtype).contiguous(memory_format=torch.channels_last)).float()
        outputs = []
        for start in range(0, len(inputs), self.buckets[-1]):
            chunk = inputs[start : start + self.buckets[-1]]
            graph, static_input, static_output = self.graphs[self.bucket(len(chunk))]
            static_input[: len(chunk)].copy_(chunk)
            graph.replay()
            outputs.append(static_output[: len(chunk)].to(torch.float32, copy=True))  # the graph reuses it
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
