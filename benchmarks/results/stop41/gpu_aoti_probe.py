"""Does an AOTInductor package beat the fp16 CUDA graph classifier, and can an instance load it?

    python benchmarks/results/stop41/gpu_aoti_probe.py --out DIR [--variants default,mm1x1,autotune] [--arch resnet50]

Each step runs in its own process (a crash shows as its exit status, e.g. -11 for SIGSEGV):
1. ``compile VARIANT``: the fixed-seed random classifier, fp16 channels_last, exported with a dynamic
   batch (1-256) and compiled by ``aoti_compile_and_package`` with freezing and the variant's Inductor
   options; prints the compile time and the package's size.
2. ``measure``: in one process, the classifier as served today (CUDA graph per bucket) captured first,
   then each package loaded (its load time), run plainly and replayed from CUDA graphs of its own;
   logits against fp32 eager (max |d| relative to the largest logit, top-1 agreement) and img/s per
   batch, candidates interleaved. ``--order aoti-first`` loads the packages before capturing.
3. What torch offers below fp16 for convolutions without TensorRT (fp8, int8): tried and reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BATCHES = (1, 8, 64, 256)
VARIANTS = {
    "default": {},
    "mm1x1": {"conv_1x1_as_mm": True},
    "autotune": {"max_autotune": True},
}


def fp16_model(arch: str, device):
    import torch

    from resnet_serve.model.weights import random_model

    model = random_model(arch).model
    return model.to(device=device, dtype=torch.float16, memory_format=torch.channels_last)


def compile_variant(variant: str, package: Path, arch: str, device_name: str) -> dict:
    import torch

    device = torch.device(device_name)
    model = fp16_model(arch, device)
    example = torch.randn(8, 3, 224, 224, device=device).half().contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=max(BATCHES))
    start = time.perf_counter()
    with torch.inference_mode():
        exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        path = torch._inductor.aoti_compile_and_package(
            exported, package_path=str(package), inductor_configs={"freezing": True, **VARIANTS[variant]}
        )
    return {"variant": variant, "compile_s": round(time.perf_counter() - start, 1),
            "package_mb": round(Path(path).stat().st_size / 2**20, 1)}  # fmt: skip


class Aoti:
    """A loaded package as a module the graphed classifier can call."""

    def __init__(self, path: Path):
        import torch

        start = time.perf_counter()
        self.runner = torch._inductor.aoti_load_package(str(path))
        self.load_s = time.perf_counter() - start

    def __call__(self, x):
        return self.runner(x)


def images_per_second(fn, x, repeats: int = 3) -> float:
    import torch

    for _ in range(3):
        fn(x)
    torch.cuda.synchronize()
    calls = max(10, 512 // len(x))
    best = 0.0
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn(x)
        stop.record()
        stop.synchronize()
        best = max(best, len(x) * calls / (start.elapsed_time(stop) / 1000))
    return best


def measure(packages: list[Path], arch: str, order: str) -> list[dict]:
    import torch

    from resnet_serve.torch_classifier import GraphedClassifier

    device = torch.device("cuda")
    torch.manual_seed(0)
    x32 = torch.randn(max(BATCHES), 3, 224, 224, device=device)
    with torch.inference_mode():
        reference = fp16_model(arch, device).float()(x32.contiguous(memory_format=torch.channels_last)).float()
    candidates: dict[str, object] = {}

    def add_graphed() -> None:
        candidates["fp16 cuda graph (today)"] = GraphedClassifier(fp16_model(arch, device), device, torch.float16,
                                                                  buckets=BATCHES)  # fmt: skip

    def add_packages() -> None:
        for package in packages:
            runner = Aoti(package)
            print(json.dumps({"package": package.name, "load_s": round(runner.load_s, 2)}), flush=True)
            candidates[f"{package.stem} plain"] = GraphedClassifier(runner, device, torch.float16, buckets=BATCHES,
                                                                    use_graphs=False)  # fmt: skip
            candidates[f"{package.stem} cuda graph"] = GraphedClassifier(runner, device, torch.float16,
                                                                         buckets=BATCHES)  # fmt: skip

    for step in (add_graphed, add_packages) if order == "graphs-first" else (add_packages, add_graphed):
        step()
    rows = []
    for name, classifier in candidates.items():
        logits = classifier(x32.half())
        relative = (logits - reference).abs().max().item() / reference.abs().max().item()
        agree = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
        rows.append({"candidate": name, "max_rel_d": round(relative, 5), "top1_agree": round(agree, 4)})
        print(json.dumps(rows[-1]), flush=True)
    for batch in BATCHES:
        x = x32[:batch].half().contiguous(memory_format=torch.channels_last)
        speeds = {name: round(images_per_second(c, x)) for name, c in candidates.items()}
        rows.append({"batch": batch, "img_per_s": speeds})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def lower_precisions() -> dict:
    import torch

    device = torch.device("cuda")
    x = torch.randn(8, 64, 56, 56, device=device)
    w = torch.randn(64, 64, 3, 3, device=device)
    found = {"torch": torch.__version__, "scaled_mm": hasattr(torch, "_scaled_mm")}
    for name, dtype in (("fp8_e4m3", torch.float8_e4m3fn), ("int8", torch.int8)):
        try:
            torch.nn.functional.conv2d(x.to(dtype), w.to(dtype), padding=1)
            found[f"conv2d {name}"] = "ran"
        except Exception as error:
            found[f"conv2d {name}"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    try:
        import torchao

        found["torchao"] = torchao.__version__
    except ImportError:
        found["torchao"] = "not installed"
    return found


def child(args: list[str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -9, f"timed out after {timeout:.0f} s"
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
    return done.returncode, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", nargs="?", default="all", choices=("all", "compile", "measure", "lower"))
    parser.add_argument("--out", type=Path, default=Path("aoti-probe"))
    parser.add_argument("--variants", default="default,mm1x1,autotune")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--order", default="graphs-first", choices=("graphs-first", "aoti-first"))
    parser.add_argument("--packages", default="")
    parser.add_argument("--compile-timeout", type=float, default=330.0)
    parser.add_argument("--seconds", type=float, default=560.0, help="the whole probe's time")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "compile":
        print(json.dumps(compile_variant(args.variant, args.out / f"{args.variant}.pt2", args.arch, args.device)))
        return
    if args.step == "measure":
        measure([Path(p) for p in args.packages.split(",") if p], args.arch, args.order)
        return
    if args.step == "lower":
        print(json.dumps(lower_precisions()))
        return
    log = open(args.out / "aoti-probe.txt", "a")  # noqa: SIM115 - appended step by step, kept if killed

    def report(what: str, rc: int, tail: str) -> None:
        print(f"## {what}: exit {rc}\n{tail}", file=log, flush=True)
        print(f"## {what}: exit {rc}\n{tail}", flush=True)

    deadline = time.monotonic() + args.seconds
    report("lower precisions", *child(["lower"], 120))
    packages = []
    for variant in args.variants.split(","):
        timeout = min(args.compile_timeout, deadline - time.monotonic() - 150)  # leave time to measure
        rc, tail = child(["compile", "--variant", variant, "--out", str(args.out), "--arch", args.arch], timeout)
        report(f"compile {variant}", rc, tail)
        if rc == 0:
            packages.append(str(args.out / f"{variant}.pt2"))
    common = ["--arch", args.arch, "--packages", ",".join(packages)]
    report("measure graphs-first", *child(["measure", *common], max(30, deadline - time.monotonic() - 60)))
    report("measure aoti-first", *child(["measure", *common, "--order", "aoti-first"], 60))


if __name__ == "__main__":
    main()
