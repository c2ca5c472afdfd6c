"""The classifier compiled ahead of time by AOTInductor (``repo --compiler aoti``).

``repo`` exports the model with a dynamic batch, compiles it once on the GPU it will serve on (Inductor
with freezing: BatchNorm folded, its epilogues fused) and stores the package beside the state_dict, with
a note of what it was built for. Each instance then loads it in seconds instead of compiling, and
replays it from its CUDA graphs as it does the eager model; where the package does not fit (another
GPU or torch) or does not load, the instance says why in the server's log and serves the eager model.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from resnet_serve.errors import ResnetServeError
from resnet_serve.model_card import ModelCard
from resnet_serve.progress import say, step

PACKAGE_FILE = "model.pt2"  # in the version directory, beside model.pt
NOTE_FILE = "model.pt2.json"  # what the package was built for (BuildNote)
# Inductor's options: freezing folds the weights and BatchNorm into constants (the gain measured with
# torch.compile: 1.69x the fp16 CUDA graph at batch 256 on an H200, benchmarks/RESULTS.md).
INDUCTOR_OPTIONS = {"freezing": True}
PARITY = 1e-2  # most |compiled - eager| over the eager logits' largest, as the GPU tests allow fp16


class CompileError(ResnetServeError):
    """The classifier could not be compiled, or the package disagrees with the eager model."""


@dataclass(frozen=True)
class BuildNote:
    """What a package runs on (``target``: the GPU and torch), and how it was made."""

    target: str
    dtype: str
    input_size: int
    max_batch: int
    compile_s: float
    parity: float  # most |compiled - eager| relative to the largest eager logit, checked when built


def target(device: torch.device) -> str:
    """What a package only runs on: the device (a GPU's name and compute capability) and torch with its CUDA."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        where = f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    else:
        where = f"{device.type} {platform.machine()}"
    return f"{where}, torch {torch.__version__}"


def _input(batch: int, input_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, input_size, input_size, generator=generator)
    return x.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)


def compile_package(
    model: torch.nn.Module, package: Path, *, device: torch.device, dtype: torch.dtype, input_size: int,
    max_batch: int,
) -> BuildNote:  # fmt: skip
    """Compile ``model`` (on ``device``, in ``dtype``, channels_last) for batches of 1 to ``max_batch``
    into ``package``, check it against the eager model, and write its :class:`BuildNote` beside it."""
    example = _input(min(8, max_batch), input_size, device, dtype)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(package), inductor_configs=INDUCTOR_OPTIONS
            )
    except Exception as exc:  # Inductor raises many kinds; the first line says which
        raise CompileError(f"AOTInductor could not compile the classifier: {_first_line(exc)}") from exc
    seconds = time.perf_counter() - start
    parity = _parity(model, load(package, device), example)
    if parity > PARITY:
        package.unlink()
        raise CompileError(f"the compiled classifier differs from the eager one by {parity:.3g} of its largest "
                           f"logit (at most {PARITY}); serve without --compiler")  # fmt: skip
    note = BuildNote(target(device), str(dtype).removeprefix("torch."), input_size, max_batch, round(seconds, 1),
                     round(parity, 6))  # fmt: skip
    note_path(package).write_text(json.dumps(asdict(note), indent=1) + "\n")
    return note


def _parity(model: torch.nn.Module, compiled: Callable, example: torch.Tensor) -> float:
    with torch.inference_mode():
        eager = model(example).float()
        return ((compiled(example).float() - eager).abs().max() / eager.abs().max()).item()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def note_path(package: Path) -> Path:
    return package.with_name(NOTE_FILE)


def load(package: Path, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The package's model on ``device`` (its weights loaded there)."""
    index = -1 if device.index is None else device.index  # -1: the current device
    return torch._inductor.aoti_load_package(str(package), device_index=index)


def load_if_fits(package: Path, device: torch.device) -> tuple[Callable | None, str]:
    """(the package's model, what was loaded) where ``package`` was built for this device and torch and
    loads; else (None, why not): the caller serves the eager model."""
    try:
        note = BuildNote(**json.loads(note_path(package).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        return None, f"no usable note beside {package.name} ({_first_line(exc)})"
    here = target(device)
    if note.target != here:
        return None, f"{package.name} was compiled for {note.target}; this is {here}"
    try:
        model = load(package, device)
    except Exception as exc:  # a damaged or partial package: serve the eager model rather than fail
        return None, f"{package.name} did not load ({_first_line(exc)})"
    return model, f"{package.name}, compiled for {note.target} in {note.compile_s:.0f} s"


def compile_on_gpu(weights: Path, package: Path, *, card: ModelCard, dtype: str, gpu: int) -> BuildNote:
    """``repo --compiler aoti``: the classifier of the state_dict ``weights``, built as ``card`` says,
    compiled on GPU ``gpu`` for the batches an instance runs (1 to its largest bucket), in a process of
    its own: a package that crashes the process loading it (below) ends that one, not ``repo``."""
    if not torch.cuda.is_available():
        raise CompileError("--compiler aoti compiles on the GPU the repository serves on; torch sees no CUDA GPU here")
    what = f"{card.arch} {dtype} on GPU {gpu} ({torch.cuda.get_device_name(gpu)})"
    with step(f"Compiling the classifier with AOTInductor: {what} (minutes)"):
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            try:
                note = pool.submit(_compile_on_gpu, weights, package, card, dtype, gpu).result()
            except BrokenProcessPool:
                raise CompileError(CRASHED.format(cxx=os.environ.get("CXX", "g++"))) from None
    say(f"Compiled in {note.compile_s:.0f} s; logits within {note.parity:.1e} of the eager model's largest")
    return note


# Seen on the lent H100 (torch 2.11): CXX named a newer GCC than the one whose libstdc++ the process
# loads, and the package's std::regex crashed on load (SIGSEGV in parse_device_str).
CRASHED = ("the compiled classifier crashed the process that loaded it; Inductor built it with CXX={cxx}, and a C++ "
           "compiler whose libstdc++ is not the one Python loads does this: set CXX to the system's g++ "
           "(CXX=/usr/bin/g++) and run repo again, or write the repository without --compiler")  # fmt: skip


def _compile_on_gpu(weights: Path, package: Path, card: ModelCard, dtype: str, gpu: int) -> BuildNote:
    from resnet_serve.model_params import torch_dtype_parameter
    from resnet_serve.torch_classifier import DEFAULT_BUCKETS, load_state_dict_model

    device, torch_dtype = torch.device("cuda", gpu), torch_dtype_parameter({"dtype": dtype})
    model = load_state_dict_model(str(weights), device, torch_dtype, card.arch, card.num_classes)
    return compile_package(model, package, device=device, dtype=torch_dtype, input_size=card.input_size,
                           max_batch=max(DEFAULT_BUCKETS))  # fmt: skip
