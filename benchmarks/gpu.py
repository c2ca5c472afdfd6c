"""GPU benchmark of record: classifier and decode ceilings, then the served ensembles, in one run.

    bash benchmarks/gpu.sh            # on the lent GPU machine; writes JSON, PNG and logs under $OUT

Steps (each printed as it goes; a short table at the end):
1. fixed-seed random ResNet-50 -> build/gpu/resnet50.pt and .onnx (speed does not depend on weights)
2. classifier-only ceiling at batch 256: torch fp32 eager, fp16 channels_last eager, fp16 CUDA graph
3. nvJPEG decode + resize/crop/normalize ceiling (GpuPreprocessor) on 500x375 JPEGs, batch 256
4. served sweeps with `resnet_serve.bench`: gpu (ours on the GPU), seed-gpu (the seed's
   preprocessing + fp32 torch classifier, no batching), ours on the CPU for contrast; 1 and 8
   images per request
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from resnet_serve import bench
from resnet_serve.preprocess import PreprocessOptions
from resnet_serve.preprocess_gpu import GpuPreprocessor
from resnet_serve.repository import RepositorySpec
from resnet_serve.server import find_server
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


def classifier_ceiling(weights: Path, batch: int = 256) -> dict[str, float]:
    device = torch.device("cuda")
    inputs = torch.randn(batch, 3, 224, 224, device=device)
    results = {}
    for name, dtype, graphs in (("fp32 eager", torch.float32, False), ("fp16 eager", torch.float16, False),
                                ("fp16 cuda graph", torch.float16, True)):  # fmt: skip
        model = load_state_dict_model(str(weights), device, dtype)
        classifier = GraphedClassifier(model, device, dtype, buckets=(batch,), use_graphs=graphs)
        seconds = timed(lambda c=classifier: c(inputs), 20)
        results[name] = batch / seconds
        print(f"classifier {name:<16} batch {batch}: {batch / seconds:9.0f} img/s", flush=True)
        del classifier, model
        torch.cuda.empty_cache()
    return results


def decode_ceiling(images: list[bytes], batch: int = 256) -> float:
    preprocess = GpuPreprocessor("cuda", torch.float16, PreprocessOptions())
    group = [images[k % len(images)] for k in range(batch)]
    seconds = timed(lambda: preprocess(group), 10)
    print(f"nvJPEG preprocess batch {batch}: {batch / seconds:9.0f} img/s", flush=True)
    return batch / seconds


def per_call_costs(weights: Path, images: list[bytes]) -> dict[str, dict[int, float]]:
    """Milliseconds per call at small batches: the fixed cost a served execution pays."""
    device = torch.device("cuda")
    preprocess = GpuPreprocessor("cuda", torch.float16, PreprocessOptions())
    classifier = GraphedClassifier(load_state_dict_model(str(weights), device, torch.float16), device, torch.float16)
    costs: dict[str, dict[int, float]] = {"preprocess": {}, "classifier": {}}
    for batch in (1, 8, 32, 128):
        group = [images[k % len(images)] for k in range(batch)]
        costs["preprocess"][batch] = timed(lambda g=group: preprocess(g), 20) * 1000
        tensor = preprocess(group)[0]
        costs["classifier"][batch] = timed(lambda t=tensor: classifier(t), 20) * 1000
        print(f"batch {batch:>3}: preprocess {costs['preprocess'][batch]:7.2f} ms, "
              f"classifier {costs['classifier'][batch]:7.2f} ms", flush=True)  # fmt: skip
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=ROOT / ".whl" / "data" / "mug.jpg")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", default="1,8,32,64,128,256")
    parser.add_argument("--client-processes", type=int, default=6)
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "build" / "gpu"
    work.mkdir(parents=True, exist_ok=True)

    from resnet_serve.export import export_onnx
    from resnet_serve.weights import random_resnet50

    model = random_resnet50().model
    weights = work / "resnet50.pt"
    torch.save(model.state_dict(), weights)
    onnx = export_onnx(model, work / "resnet50.onnx")

    import subprocess
    import sys

    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_images.py"), str(work / "images"),
                    "--photo", str(args.photo)], check=True)  # fmt: skip
    small = (work / "images" / "mug_500x375.jpg").read_bytes()
    mug = (work / "images" / "mug.jpg").read_bytes()

    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    report["classifier_img_per_s"] = classifier_ceiling(weights)
    report["nvjpeg_preprocess_img_per_s"] = decode_ceiling([small])
    report["nvjpeg_preprocess_mug_img_per_s"] = decode_ceiling([mug], batch=64)
    report["per_call_ms"] = per_call_costs(weights, [small])
    (args.out / "ceilings.json").write_text(json.dumps(report, indent=2))
    if args.skip_sweeps:
        return

    binary = find_server()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    ours = RepositorySpec(model_file=onnx)
    points: list[bench.Point] = []
    runs = [
        ("gpu", 1, concurrencies),
        ("fused-gpu", 1, concurrencies),
        ("gpu", 8, concurrencies[:4]),
        ("fused-gpu", 8, concurrencies[:4]),
        ("seed-gpu", 1, concurrencies[:3]),
        ("ours", 1, [8]),
    ]
    files = bench.ModelFiles(onnx=onnx, int8_onnx=onnx, torch_weights=weights)
    for setup, per_request, levels in runs:
        spec = replace(bench.setup_spec(setup, ours, files), max_queue_delay_us=args.queue_delay_us)
        name = setup if per_request == 1 else f"{setup}-x{per_request}"
        sweep = bench.Sweep(
            concurrencies=levels,
            seconds=args.seconds,
            images_per_request=per_request,
            client_processes=args.client_processes,
        )
        points += bench.serve_and_sweep(name, spec, [small], sweep, work / "bench", binary)
        print(bench.table([p for p in points if p.setup == name]), flush=True)
    (args.out / "gpu-sweep.json").write_text(json.dumps([asdict(p) for p in points], indent=2))
    bench.plot(points, args.out / "gpu-sweep.png", "ResNet-50 ensemble on one GPU (500x375 JPEG)")
    print(bench.table(points))
    print(bench.ratios(points, "seed-gpu"))


if __name__ == "__main__":
    main()
