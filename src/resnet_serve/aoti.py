"""The classifier compiled ahead of time by AOTInductor (``repo --compiler aoti``).

``repo`` exports the model with a dynamic batch and compiles it once on the GPU it will serve on
(Inductor with freezing: BatchNorm folded, its epilogues fused), in a process of its own; checks it
against the eager model; and stores the package beside the state_dict with a note of what it was built
from (the weights' hash, architecture, dtype, sizes) and for (the GPU and torch). Each instance loads it
(25-56 s per process on an H100) and runs batches of ``COMPILED_FROM`` images or more on it. Smaller
batches, and every batch where the package does not fit or raises on load, replay the eager model's CUDA
graphs, with the reason in the server's log. A package that crashes the process loading it would end
that instance: ``repo`` loads it once in a child process first.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from resnet_serve.errors import ResnetServeError
from resnet_serve.model_card import ModelCard, file_sha256
from resnet_serve.model_params import torch_dtype
from resnet_serve.progress import say, step

PACKAGE_FILE = "model.pt2"  # in the version directory, beside model.pt
NOTE_FILE = "model.pt2.json"  # what the package was built from and for (BuildNote)
# Inductor's options: freezing folds the weights and BatchNorm into constants (the gain measured with
# torch.compile: 1.69x the fp16 CUDA graph at batch 256 on an H200, benchmarks/RESULTS.md).
INDUCTOR_OPTIONS = {"freezing": True}
PARITY = 1e-2  # most |compiled - eager| over the eager logits' largest, as the GPU tests allow fp16
# Batches of this many images or more run the package; smaller ones the eager model's CUDA graphs. The
# package cannot be captured in a CUDA graph ("operation not permitted when stream is capturing"), so
# it launches every kernel itself. One H100, ms per batch of the classifier alone, eager CUDA graph
# (a batch padded to its bucket) against the package: 1 image 0.87 / 1.70, 8 1.14 / 1.63, 16 1.56 /
# 1.84, 32 2.59 / 1.86, 64 4.83 / 2.83, 256 18.2 / 10.1 (benchmarks/RESULTS.md, stop 41). Up to 16 the
# graph is faster; from 17 the graph pads to 32 and the package is.
COMPILED_FROM = 17


class CompileError(ResnetServeError):
    """The classifier could not be compiled, or the package disagrees with the eager model."""


@dataclass(frozen=True)
class Built:
    """What a package is of: the weights (sha256 of the state_dict), how the classifier is built from
    them, and the batches it takes. An instance uses a package only for the same."""

    weights_sha256: str
    arch: str
    num_classes: int
    dtype: str  # the config's: fp16 or fp32
    input_size: int
    max_batch: int


@dataclass(frozen=True)
class BuildNote:
    """A package's note: what it runs on (``target``: the GPU and torch), what it is of, how it was made."""

    target: str
    built: Built
    compile_s: float
    parity: float  # most |compiled - eager| relative to the largest eager logit, at the batches it serves

    @classmethod
    def read(cls, path: Path) -> BuildNote:
        values = json.loads(path.read_text())
        return cls(**{**values, "built": Built(**values["built"])})


def target(device: torch.device) -> str:
    """What a package only runs on: the device (a GPU's name and compute capability) and torch with its CUDA."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        where = f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    else:
        where = f"{device.type} {platform.machine()}"
    return f"{where}, torch {torch.__version__}"


def _input(batch: int, built: Built, device: torch.device) -> torch.Tensor:
    x = torch.randn(batch, 3, built.input_size, built.input_size, generator=torch.Generator().manual_seed(batch))
    return x.to(device=device, dtype=torch_dtype(built.dtype)).contiguous(memory_format=torch.channels_last)


def compile_only(model: torch.nn.Module, package: Path, *, device: torch.device, built: Built) -> float:
    """Compile ``model`` (on ``device``, channels_last, as ``built`` says) for batches of 1 to
    ``built.max_batch`` into ``package``; the seconds it took."""
    example = _input(min(8, built.max_batch), built, device)
    batch = torch.export.Dim("batch", min=1, max=built.max_batch)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(package), inductor_configs=INDUCTOR_OPTIONS
            )
    except Exception as exc:  # Inductor raises many kinds; the first line says which
        raise CompileError(f"AOTInductor could not compile the classifier: {_first_line(exc)}") from exc
    return time.perf_counter() - start


def check_and_note(
    model: torch.nn.Module, package: Path, *, device: torch.device, built: Built, compile_s: float
) -> BuildNote:
    """Load ``package``, compare it with the eager ``model`` at the smallest and largest batch it serves,
    and write its :class:`BuildNote` beside it; a package that disagrees is removed and refused."""
    compiled = load(package, device)
    sizes = sorted({min(COMPILED_FROM, built.max_batch), built.max_batch})
    parity = max(_parity(model, compiled, _input(size, built, device)) for size in sizes)
    if parity > PARITY:
        package.unlink()
        raise CompileError(f"the compiled classifier differs from the eager one by {parity:.3g} of its largest "
                           f"logit (at most {PARITY}); serve without --compiler")  # fmt: skip
    note = BuildNote(target(device), built, round(compile_s, 1), round(parity, 6))
    note_path(package).write_text(json.dumps(asdict(note), indent=1) + "\n")
    return note


def compile_package(model: torch.nn.Module, package: Path, *, device: torch.device, built: Built) -> BuildNote:
    """:func:`compile_only`, then :func:`check_and_note`, in this process."""
    seconds = compile_only(model, package, device=device, built=built)
    return check_and_note(model, package, device=device, built=built, compile_s=seconds)


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


def load_if_fits(package: Path, device: torch.device, built: Built) -> tuple[Callable | None, str]:
    """(the package's model, what was loaded) where ``package`` was built from ``built`` (the same
    weights, classifier and sizes) for this device and torch, and loads; else (None, why not): the
    caller serves the eager model."""
    try:
        note = BuildNote.read(note_path(package))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"no usable note beside {package.name} ({_first_line(exc)})"
    if (here := target(device)) != note.target:
        return None, f"{package.name} was compiled for {note.target}; this is {here}"
    if note.built != built:
        ours, its = asdict(built), asdict(note.built)
        name = next(key for key in ours if ours[key] != its[key])
        return None, f"{package.name} was compiled with {name} {its[name]}; this model has {ours[name]}"
    try:
        model = load(package, device)
    except Exception as exc:  # a damaged or partial package: serve the eager model rather than fail
        return None, f"{package.name} did not load ({_first_line(exc)})"
    return model, f"{package.name}, compiled for {note.target} in {note.compile_s:.0f} s"


def built_from(weights: Path, *, arch: str, num_classes: int, dtype: str, input_size: int) -> Built:
    """What a package of the state_dict ``weights``, built as ``arch`` with ``num_classes`` in ``dtype``,
    is of: for the batches an instance runs (1 to its largest bucket)."""
    from resnet_serve.torch_classifier import DEFAULT_BUCKETS

    return Built(file_sha256(weights), arch, num_classes, dtype, input_size, max(DEFAULT_BUCKETS))


def compile_on_gpu(weights: Path, package: Path, *, card: ModelCard, dtype: str, gpu: int) -> BuildNote:
    """``repo --compiler aoti``: the classifier of the state_dict ``weights``, built as ``card`` says,
    compiled on GPU ``gpu`` in a process of its own, which also loads it: a package that crashes the
    process loading it ends that one, and ``repo`` says what to do."""
    if not torch.cuda.is_available():
        raise CompileError("--compiler aoti compiles on the GPU the repository serves on; torch sees no CUDA GPU here")
    built = built_from(weights, arch=card.arch, num_classes=card.num_classes, dtype=dtype, input_size=card.input_size)
    what = f"{card.arch} {dtype} on GPU {gpu} ({torch.cuda.get_device_name(gpu)})"
    with step(f"Compiling the classifier with AOTInductor: {what} (minutes)"):
        note = in_child(_compile_in_child, weights, package, built, gpu)
    say(f"Compiled in {note.compile_s:.0f} s; logits within {note.parity:.1e} of the eager model's largest")
    return note


# Seen on the lent H100 (torch 2.11): CXX named another GCC than the one whose libstdc++ the process
# loads, and the package's std::regex crashed on load (SIGSEGV in parse_device_str; results/stop41).
CRASHED = ("the compiled classifier crashed the process that loaded it ({how}); Inductor built it with CXX={cxx}, "
           "and a C++ compiler whose libstdc++ is not the one Python loads does this: set CXX to the system's "
           "g++ (CXX=/usr/bin/g++) and run repo again, or write the repository without --compiler")  # fmt: skip


def in_child(work: Callable, *args) -> BuildNote:
    """``work(send, *args)`` in a spawned process, which sends ("compiled",) once the package is written,
    then ("done", note) or ("error", message); where it ends without either, why, in one line."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=work, args=(send, *args))
    child.start()
    send.close()  # the child holds the only sending end: recv ends (EOFError) when the child does
    last: tuple = ("started",)
    try:
        while True:
            last = receive.recv()
    except EOFError:
        pass
    child.join()
    if last[0] == "done":
        return last[1]
    if last[0] == "error":
        raise CompileError(last[1])
    code = child.exitcode or 0
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    if last[0] == "compiled" and code == -signal.SIGSEGV:
        raise CompileError(CRASHED.format(how=how, cxx=os.environ.get("CXX", "g++")))
    doing = "loading the package" if last[0] == "compiled" else "compiling"
    raise CompileError(
        f"the compiling process ended while {doing} ({how}; SIGKILL is often the host out "
        "of memory); free memory and run repo again, or write the repository without --compiler"
    )


def _compile_in_child(send, weights: Path, package: Path, built: Built, gpu: int) -> None:
    from resnet_serve.torch_classifier import load_state_dict_model

    try:
        device = torch.device("cuda", gpu)
        model = load_state_dict_model(str(weights), device, torch_dtype(built.dtype), built.arch, built.num_classes)
        seconds = compile_only(model, package, device=device, built=built)
        send.send(("compiled",))
        send.send(("done", check_and_note(model, package, device=device, built=built, compile_s=seconds)))
    except CompileError as exc:
        send.send(("error", str(exc)))
    except Exception as exc:  # anything else, in one line for repo
        send.send(("error", f"compiling the classifier failed: {_first_line(exc)}"))
