"""GPU benchmark of record: classifier and decode ceilings, then the served ensembles, in one run.

    bash benchmarks/gpu.sh            # on the lent GPU machine; writes JSON, PNG and logs under $OUT

Steps (each printed as it goes; a short table at the end):
1. fixed-seed random --arch (ResNet-50 by default) -> build/gpu/<arch>.pt, .onnx and its model card (speed
   does not depend on weights)
2. classifier-only ceiling at batch 256: torch fp32 eager, fp16 channels_last eager, fp16 CUDA graph
   (cuDNN's heuristic kernels, as served by default; "tuned": kernels timed at load)
   (and with --compile, fp16 torch.compile max-autotune with Inductor freezing, and its compile time;
   with --aoti, the AOTInductor package `repo --compiler aoti` writes, at batch 1 to 256)
3. GPU decode + resize/crop/normalize ceiling (GpuPreprocessor) on 500x375 JPEGs at batch 256 and
   3361x2521 photos at batch 64: in this process, then in N processes at once on GPU 0 under MPS
   (--preprocess-processes), as the served instances run it
4. served sweeps with `resnet_serve.bench` on GPU 0: fused-gpu (one Python model), gpu (two-step
   ensemble), fused with other instance counts per GPU, with and without the server's MPS daemon
   (-nomps), seed-gpu (the seed's preprocessing + fp32 torch classifier, no batching); 1 and 8
   images per request; then the same on every GPU of the machine
5. every served figure as a fraction of the classifier-only fp16 CUDA-graph ceiling of step 2 (one
   GPU; n GPUs against n times it), with each GPU's mean utilization during the setup's sweep (NVML)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import queue
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from PIL import Image

from resnet_serve import bench
from resnet_serve.images.preprocess import PreprocessOptions
from resnet_serve.images.preprocess_gpu import GpuPreprocessor
from resnet_serve.model_card import ModelCard
from resnet_serve.repository import RepositorySpec
from resnet_serve.server import find_server
from resnet_serve.server.mps import start_daemon
from resnet_serve.torch_classifier import GraphedClassifier, load_state_dict_model

ROOT = Path(__file__).resolve().parents[1]


def timed(function, repeat: int) -> float:
    """Median seconds per call, CUDA-synchronized, after warm-up."""
    for _ in range(3):
        function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def load_model(weights: Path, card: ModelCard, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    return load_state_dict_model(str(weights), device, dtype, card.arch, card.num_classes)


def classifier_ceiling(weights: Path, card: ModelCard, batch: int = 256) -> dict[str, float]:
    device = torch.device("cuda")
    inputs = torch.randn(batch, 3, card.input_size, card.input_size, device=device)
    results = {}
    for name, dtype, graphs, deterministic in (("fp32 eager", torch.float32, False, True),
                                               ("fp16 eager", torch.float16, False, True),
                                               ("fp16 cuda graph", torch.float16, True, True),
                                               ("fp16 cuda graph tuned", torch.float16, True, False)):  # fmt: skip
        model = load_model(weights, card, device, dtype)
        classifier = GraphedClassifier(model, device, dtype, buckets=(batch,), use_graphs=graphs,
                                       input_size=card.input_size, deterministic=deterministic)  # fmt: skip
        seconds = timed(lambda c=classifier: c(inputs), 20)
        results[name] = batch / seconds
        print(f"classifier {name:<16} batch {batch}: {batch / seconds:9.0f} img/s", flush=True)
        del classifier, model
        torch.cuda.empty_cache()
    return results


def aoti_ceiling(weights: Path, card: ModelCard, package: Path) -> dict[str, dict[int, float]]:
    """Issue 30: the classifier as ``repo --compiler aoti`` serves it (the AOTInductor package for batches of
    COMPILED_FROM and more, the eager model's CUDA graphs below) against the eager fp16 CUDA graphs alone."""
    from resnet_serve.aoti import compile_on_gpu, load

    note = compile_on_gpu(weights, package, card=card, dtype="fp16", gpu=0)
    device, size = torch.device("cuda"), card.input_size
    start = time.perf_counter()
    compiled = load(package, device)
    print(f"AOTInductor package: compiled in {note.compile_s:.0f} s, loaded in {time.perf_counter() - start:.1f} s, "
          f"parity {note.parity:.1e}", flush=True)  # fmt: skip
    model = load_model(weights, card, device, torch.float16)
    classifiers = {
        "fp16 cuda graph": GraphedClassifier(model, device, torch.float16, input_size=size),
        "with aoti": GraphedClassifier(model, device, torch.float16, input_size=size, compiled=compiled),
    }
    results: dict[str, dict[int, float]] = {name: {} for name in classifiers}
    for batch in (1, 8, 16, 32, 64, 128, 256):
        inputs = torch.randn(batch, 3, size, size, device=device).half()
        for name, classifier in classifiers.items():
            results[name][batch] = batch / timed(lambda c=classifier, x=inputs: c(x), max(20, 2048 // batch))
        ratio = results["with aoti"][batch] / results["fp16 cuda graph"][batch]
        print(f"classifier batch {batch:>3}: fp16 cuda graph {results['fp16 cuda graph'][batch]:8.0f} img/s, "
              f"with aoti {results['with aoti'][batch]:8.0f} ({ratio:.2f}x)", flush=True)  # fmt: skip
    # Untried on a GPU so far (stop 41's review): a package loaded without its runner's thread
    # synchronization may let a CUDA graph capture it, every bucket then on the package. Last: a failed
    # capture may leave this process's CUDA context unusable.
    try:
        single = torch._inductor.aoti_load_package(str(package), run_single_threaded=True, device_index=0)
        graphed = GraphedClassifier(single, device, torch.float16, input_size=size)
        for batch in (1, 8, 256):
            inputs = torch.randn(batch, 3, size, size, device=device).half()
            rate = batch / timed(lambda x=inputs: graphed(x), max(20, 2048 // batch))
            results.setdefault("aoti single-threaded cuda graph", {})[batch] = rate
            print(f"classifier batch {batch:>3}: aoti single-threaded in a cuda graph {rate:8.0f} img/s", flush=True)
    except Exception as exc:  # the finding is the message
        print(f"aoti single-threaded in a cuda graph: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
    return {**results, "compile_s": note.compile_s}


def compiled_ceiling(weights: Path, card: ModelCard, batch: int = 256) -> dict[str, float]:
    """Issue 16's option: ``torch.compile`` (max-autotune, Inductor freezing) against the CUDA-graph
    path at ``batch``, and what compiling costs at load (one batch size; served buckets would each
    compile)."""
    import torch._inductor.config as inductor

    inductor.freezing = True
    device = torch.device("cuda")
    model = load_model(weights, card, device, torch.float16)
    size = card.input_size
    inputs = torch.randn(batch, 3, size, size, device=device).half().contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, mode="max-autotune")
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(inputs)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        seconds = timed(lambda: compiled(inputs), 20)
    print(f"classifier fp16 torch.compile batch {batch}: {batch / seconds:9.0f} img/s; compiled in {compile_s:.0f} s",
          flush=True)  # fmt: skip
    return {"img_per_s": batch / seconds, "compile_s": compile_s}


def decode_ceiling(images: list[bytes], options: PreprocessOptions, batch: int = 256) -> float:
    preprocess = GpuPreprocessor("cuda", torch.float16, options)
    group = [images[k % len(images)] for k in range(batch)]
    seconds = timed(lambda: preprocess(group), 10)
    width, height = Image.open(io.BytesIO(images[0])).size
    decoder = type(preprocess.decoders.for_image(width * height)).__name__
    print(f"GPU preprocess ({decoder}) batch {batch}: {batch / seconds:9.0f} img/s", flush=True)
    return batch / seconds


def _preprocess_worker(images: list[bytes], batch: int, decoder: str, seconds: float, ready, rates) -> None:
    preprocess = GpuPreprocessor("cuda", torch.float16, PreprocessOptions(), decoder)
    group = [images[k % len(images)] for k in range(batch)]
    preprocess(group)  # warm-up: the decoder this batch takes sets itself up
    torch.cuda.synchronize()
    ready.wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        preprocess(group)
        torch.cuda.synchronize()
        done += batch
    rates.put(done / (time.perf_counter() - start))


def preprocess_processes(images: list[bytes], batch: int, processes: int, decoder: str = "auto") -> float:
    """img/s of ``processes`` GPU preprocessors on GPU 0 at once, each in a process of its own as the
    served instances are, under an MPS daemon of their own where one can run, as serve starts one
    (each checks its images on its own CPU core, which one process cannot spread: RESULTS.md, stop 20)."""
    context = multiprocessing.get_context("spawn")
    ready, rates = context.Barrier(processes), context.Queue()
    daemon, sharing = start_daemon("auto", [0])
    saved = dict(os.environ)
    if daemon is not None:
        os.environ.update(daemon.client_environment(os.environ))  # spawned children inherit it
    workers = [context.Process(target=_preprocess_worker, args=(images, batch, decoder, 4.0, ready, rates))
               for _ in range(processes)]  # fmt: skip
    try:
        for worker in workers:
            worker.start()
        total = sum(rates.get(timeout=180) for _ in workers)
    except queue.Empty:
        raise RuntimeError(f"a preprocess process gave no rate; exit codes {[w.exitcode for w in workers]}") from None
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
        os.environ.clear()
        os.environ.update(saved)
        if daemon is not None:
            daemon.stop()
    width, height = Image.open(io.BytesIO(images[0])).size
    print(f"GPU preprocess, {processes} processes ({decoder}), {width}x{height} batch {batch}: {total:9.0f} img/s; "
          f"{sharing}", flush=True)  # fmt: skip
    return total


def per_call_costs(weights: Path, card: ModelCard, images: list[bytes]) -> dict[str, dict[int, float]]:
    """Milliseconds per call at small batches: the fixed cost a served execution pays."""
    device = torch.device("cuda")
    preprocess = GpuPreprocessor("cuda", torch.float16, PreprocessOptions(**card.preprocess_fields()))
    model = load_model(weights, card, device, torch.float16)
    classifier = GraphedClassifier(model, device, torch.float16, input_size=card.input_size)
    costs: dict[str, dict[int, float]] = {"preprocess": {}, "classifier": {}}
    for batch in (1, 8, 32, 128):
        group = [images[k % len(images)] for k in range(batch)]
        costs["preprocess"][batch] = timed(lambda g=group: preprocess(g), 20) * 1000
        tensor = preprocess(group)[0]
        costs["classifier"][batch] = timed(lambda t=tensor: classifier(t), 20) * 1000
        print(f"batch {batch:>3}: preprocess {costs['preprocess'][batch]:7.2f} ms, "
              f"classifier {costs['classifier'][batch]:7.2f} ms", flush=True)  # fmt: skip
    return costs


class GpuBusy:
    """Mean NVML utilization (%) of every GPU while the block runs, and the most memory (GiB) used on
    each beyond what was used when it began (this process's own), sampled every 0.2 s."""

    def __enter__(self) -> GpuBusy:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.samples: list[list[int]] = []
        self.jpeg_samples: list[list[int]] = []  # the hardware JPEG engines, where NVML reports them
        self.memory = [0.0] * len(handles)
        before = [pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**30 for h in handles]
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.2):
                self.samples.append([pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles])
                # an older NVML, or a GPU without JPEG engines: not reported
                with contextlib.suppress(AttributeError, pynvml.NVMLError):
                    self.jpeg_samples.append([pynvml.nvmlDeviceGetJpgUtilization(h)[0] for h in handles])
                used = [pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**30 for h in handles]
                used = [now - start for now, start in zip(used, before, strict=True)]
                self.memory = [round(max(pair), 1) for pair in zip(self.memory, used, strict=True)]

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import pynvml

        self._stop.set()
        self._thread.join()
        pynvml.nvmlShutdown()

    @property
    def mean(self) -> list[float]:
        return _column_means(self.samples)

    @property
    def jpeg_mean(self) -> list[float]:
        return _column_means(self.jpeg_samples)


def _column_means(samples: list[list[int]]) -> list[float]:
    return [round(sum(column) / len(column), 1) for column in zip(*samples, strict=True)]


def cores_per_thousand(point: bench.Point) -> float | None:
    """Host cores busy per 1,000 img/s at a point (the clients' included: they run on the same host)."""
    if point.host_cpu_pct is None or not point.img_per_s:
        return None
    return point.host_cpu_pct / 100 * (os.cpu_count() or 1) / (point.img_per_s / 1000)


def mps_running() -> bool:
    """Whether an MPS control daemon serves this machine: then every instance's CUDA context shares
    the GPU at once instead of taking turns in time slices (docs/DEPLOY.md). Matched by process
    name, which Linux cuts to 15 characters (a command-line match also finds the shell that started
    it); only daemons of this process namespace, and not whether the server's pipe directory is theirs."""
    import subprocess

    try:
        return subprocess.run(["pgrep", "-x", "nvidia-cuda-mps"], capture_output=True).returncode == 0
    except FileNotFoundError:  # no pgrep: say so rather than guess
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=ROOT / ".whl" / "data" / "mug.jpg")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", default="1,8,32,64,128,256,512")
    parser.add_argument("--client-processes", type=int, default=6, help="per GPU served")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--runs", help="only these served runs, by name, comma-separated (default: all)")
    parser.add_argument("--instances", default="1,2,3", help="fused-<n>inst runs: instances per GPU to compare")
    parser.add_argument("--preprocess-processes", type=int, default=8, help="preprocessors at once on GPU 0 (0: none)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile's classifier")
    parser.add_argument("--aoti", action="store_true", help="also time the AOTInductor-compiled classifier")
    parser.add_argument("--arch", default="resnet50", help="torchvision classifier to serve (default resnet50)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "build" / "gpu"
    work.mkdir(parents=True, exist_ok=True)

    from resnet_serve.model.build import export_checked
    from resnet_serve.model.weights import random_model

    loaded = random_model(args.arch)
    onnx, card = work / f"{args.arch}.onnx", loaded.card
    export_checked(loaded, onnx, [], opset=18)  # its .pt and model card beside it: the repository reads them
    weights = onnx.with_suffix(".pt")

    import subprocess
    import sys

    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_images.py"), str(work / "images"),
                    "--photo", str(args.photo)], check=True)  # fmt: skip
    small = (work / "images" / "mug_500x375.jpg").read_bytes()
    mug = (work / "images" / "mug.jpg").read_bytes()

    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "mps": mps_running()}
    print(f"{report['device']}; CUDA MPS daemon running: {report['mps']}", flush=True)
    report["arch"] = card.summary()
    options = PreprocessOptions(**card.preprocess_fields())
    report["classifier_img_per_s"] = classifier_ceiling(weights, card)
    report["nvjpeg_preprocess_img_per_s"] = decode_ceiling([small], options)
    report["nvjpeg_preprocess_mug_img_per_s"] = decode_ceiling([mug], options, batch=64)
    report["per_call_ms"] = per_call_costs(weights, card, [small])
    if args.compile:
        report["torch_compile"] = compiled_ceiling(weights, card)
    if args.aoti:
        report["aoti"] = aoti_ceiling(weights, card, work / "model.pt2")
    many = args.preprocess_processes
    cases = [("500x375", [small], 256, 1, "auto"), ("500x375", [small], 256, many, "auto"),
             ("500x375", [small], 256, many, "nvimgcodec"),  # auto takes nvImageCodec for the photos
             ("3361x2521", [mug], 64, 1, "auto"), ("3361x2521", [mug], 64, many, "auto")]  # fmt: skip
    report["preprocess_processes_img_per_s"] = {
        f"{name} b{batch} {processes}p {decoder}": preprocess_processes(images, batch, processes, decoder)
        for name, images, batch, processes, decoder in cases
        if many
    }
    (args.out / "ceilings.json").write_text(json.dumps(report, indent=2))
    if args.skip_sweeps:
        return

    binary = find_server()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    ours = RepositorySpec(model_file=onnx)
    points: list[bench.Point] = []
    one, every = "0", ",".join(str(gpu) for gpu in range(torch.cuda.device_count()))
    count = torch.cuda.device_count()
    # (name, setup, images per request, concurrencies, repository overrides)
    # (-nomps: without the MPS daemon the server starts by default, server/mps.py)
    checked = PreprocessOptions(gpu_jpeg_check="full")
    # fmt: off
    runs = [  # fused-gpu and gpu: the defaults (GPU_IMAGE_INSTANCES per GPU)
        ("fused-gpu", "fused-gpu", 1, concurrencies, {"gpus": one}),
        ("fused-gpu-x8", "fused-gpu", 8, concurrencies[2:6], {"gpus": one}),
        # issue 30: the classifier compiled by AOTInductor when the repository is written
        ("fused-aoti", "fused-gpu", 1, concurrencies, {"gpus": one, "compiler": "aoti"}),
        ("fused-aoti-x8", "fused-gpu", 8, concurrencies[2:6], {"gpus": one, "compiler": "aoti"}),
        ("fused-gpu-nomps", "fused-gpu", 1, concurrencies, {"gpus": one, "mps": "off"}),
        ("fused-gpu-nomps-x8", "fused-gpu", 8, concurrencies[2:5], {"gpus": one, "mps": "off"}),
        ("fused-nvimg", "fused-gpu", 1, concurrencies[3:], {"gpus": one, "gpu_decoder": "nvimgcodec"}),
        ("fused-nvimg-x8", "fused-gpu", 8, concurrencies[2:5], {"gpus": one, "gpu_decoder": "nvimgcodec"}),
        # issue 28: cuDNN's kernels timed at load (each instance may pick others) against its heuristics
        ("fused-tuned", "fused-gpu", 1, concurrencies, {"gpus": one, "deterministic": False}),
        ("fused-tuned-x8", "fused-gpu", 8, concurrencies[2:6], {"gpus": one, "deterministic": False}),
        ("gpu", "gpu", 1, concurrencies[2:5], {"gpus": one}),
        ("gpu-x8", "gpu", 8, concurrencies[2:5], {"gpus": one}),
        # issue 30: does the two-step profile fall past 256 in flight for want of CUDA pool (1 GiB)?
        ("gpu-x8-pool4g", "gpu", 8, concurrencies[2:5], {"gpus": one, "pool_mib": 4096}),
        # camera photos (3361x2521) one per request: auto (nvImageCodec where installed), or torchvision's nvJPEG
        ("fused-photo", "fused-gpu", 1, concurrencies[2:4], {"gpus": one, "image": "photo"}),
        ("fused-photo-torchvision", "fused-gpu", 1, concurrencies[2:4],
         {"gpus": one, "image": "photo", "gpu_decoder": "torchvision"}),
        # issue 28: every JPEG's scans read strictly on the host before the GPU decodes it (gpu_jpeg_check full)
        ("fused-checked-x8", "fused-gpu", 8, concurrencies[2:6], {"gpus": one, "preprocess": checked}),
        ("fused-photo-checked", "fused-gpu", 1, concurrencies[2:4], {"gpus": one, "image": "photo",
                                                                       "preprocess": checked}),
        ("seed-gpu", "seed-gpu", 1, concurrencies[1:2], {"gpus": one}),
    ]
    # fmt: on
    # fused instances per GPU: decode of one batch beside another's classifier
    instance_counts = [int(n) for n in args.instances.split(",")]
    for instances in instance_counts:
        more, levels = {"gpus": one, "preprocess_instances": instances}, concurrencies[2:5]
        runs += [(f"fused-{instances}inst", "fused-gpu", 1, concurrencies, more),
                 (f"fused-{instances}inst-x8", "fused-gpu", 8, levels, more),
                 (f"fused-{instances}inst-nomps-x8", "fused-gpu", 8, levels, {**more, "mps": "off"})]  # fmt: skip
    if count > 1:
        runs += [
            (f"fused-{count}gpu", "fused-gpu", 1, concurrencies[4:], {"gpus": every}),
            (f"fused-{count}gpu-x8", "fused-gpu", 8, concurrencies[3:], {"gpus": every}),
            (f"gpu-{count}gpu-x8", "gpu", 8, concurrencies[3:6], {"gpus": every}),
        ]
        for instances in instance_counts:
            more = {"gpus": every, "preprocess_instances": instances}
            runs += [(f"fused-{count}gpu-{instances}inst-x8", "fused-gpu", 8, concurrencies[3:6], more)]
    if args.runs:
        runs = [run for run in runs if run[0] in args.runs.split(",")]
    ceiling = report["classifier_img_per_s"]["fp16 cuda graph"]
    busy: dict[str, list[float]] = {}
    files = bench.ModelFiles(onnx=onnx, int8_onnx=onnx, torch_weights=weights)
    for name, setup, per_request, levels, overrides in runs:
        mps = overrides.get("mps", "auto")
        pool = overrides.get("pool_mib")
        images = [mug] if overrides.get("image") == "photo" else [small]
        repository = {key: value for key, value in overrides.items() if key not in ("mps", "pool_mib", "image")}
        spec = replace(bench.setup_spec(setup, ours, files), max_queue_delay_us=args.queue_delay_us, **repository)
        processes = args.client_processes * len(spec.gpu_ids)
        sweep = bench.Sweep(concurrencies=levels, seconds=args.seconds, images_per_request=per_request,
                            client_processes=processes)  # fmt: skip
        with GpuBusy() as sampled:
            points += bench.serve_and_sweep(name, spec, images, sweep, work / "bench", binary, mps,
                                            cuda_memory_pool_bytes=pool and pool << 20)  # fmt: skip
        busy[name] = sampled.mean
        print(bench.table([p for p in points if p.setup == name]), flush=True)
        print(f"{name}: mean GPU utilization {busy[name]} %, JPEG engines {sampled.jpeg_mean or 'not reported'} %, "
              f"the server's GPU memory {sampled.memory} GiB", flush=True)  # fmt: skip
    (args.out / "gpu-sweep.json").write_text(json.dumps([asdict(p) for p in points], indent=2))
    bench.plot(points, args.out / "gpu-sweep.png", f"{args.arch} ensemble on GPU (500x375 JPEG)")
    print(bench.table(points))
    print(bench.ratios(points, "seed-gpu"))
    gpus_of = {name: len(overrides["gpus"].split(",")) for name, _, _, _, overrides in runs
               if overrides.get("image") != "photo"}  # the ceiling is the small JPEG's  # fmt: skip
    print(f"against the classifier-only fp16 ceiling, {ceiling:.0f} img/s per GPU ({report['device']}):")
    for name in gpus_of:
        best = max(p.img_per_s for p in points if p.setup == name)
        print(f"{name:<16} best {best:8.1f} img/s = {best / (ceiling * gpus_of[name]):.2f} of the ceiling"
              f" x {gpus_of[name]} GPU; GPU utilization {busy[name]} %")  # fmt: skip
    print(f"host cores busy per 1,000 img/s ({os.cpu_count()} cores; the load clients' share included):")
    for point in points:
        if (cores := cores_per_thousand(point)) is not None:
            print(f"{point.setup:<18} {point.concurrency:>5} x {point.images_per_request}: {cores:.2f}")


if __name__ == "__main__":
    main()
