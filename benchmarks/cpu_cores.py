"""How the CPU classifier uses the cores it is given, in process, no server (issue 31).

For each precision and batch size: one stream of every thread (OpenVINO's LATENCY hint, what served
until stop 35) against the same batch split across 2/4/8 streams run at once (SplitClassifier), and
OpenVINO's own THROUGHPUT pipeline (many requests in flight, no batch boundary) as the bound. Then
which layers of the int8 model run in int8, and decode + classify as served with the cores shared three
ways (both on every core, the classifier on three quarters, each on its own share). Run:

    python benchmarks/cpu_cores.py --model build/resnet50.onnx --int8 build/resnet50.int8.onnx \\
        --image build/bench-images/mug_500x375.jpg [--seconds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from resnet_serve.host import available_cores
from resnet_serve.openvino_classifier import OpenVinoClassifier, compile_properties, cpu_capabilities

BATCHES = (1, 4, 8, 32)
STREAMS = (1, 2, 4, 8)


def rate(run, batch: np.ndarray, seconds: float) -> float:
    """Images per second of ``run(batch)`` repeated for ``seconds`` after two warm-up calls."""
    run(batch)
    run(batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def compile_streams(model_file: Path, precision: str, streams: int):
    """The model compiled with OpenVINO's THROUGHPUT hint: every core, in ``streams`` streams."""
    import openvino as ov

    core = ov.Core()
    properties = {**compile_properties(precision, available_cores()), "PERFORMANCE_HINT": "THROUGHPUT"}
    return core.compile_model(core.read_model(str(model_file)), "CPU", {**properties, "NUM_STREAMS": streams})


class SplitClassifier:
    """One batch split across the streams, run at once (what OpenVinoClassifier does not do: see its
    compile_properties); a lone image runs on one stream of every core, as served."""

    def __init__(self, model_file: Path, precision: str, streams: int):
        self.one = OpenVinoClassifier(model_file=model_file, precision=precision, threads=available_cores())
        compiled = compile_streams(model_file, precision, streams)
        self.requests = [compiled.create_infer_request() for _ in range(streams)]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if len(images) < 2:
            return self.one(images)
        running = list(zip(self.requests, np.array_split(images, min(len(self.requests), len(images))), strict=False))
        for request, chunk in running:
            request.start_async({0: chunk}, share_inputs=True)
        for request, _ in running:
            request.wait()
        return np.concatenate([request.get_output_tensor(0).data for request, _ in running])


def pipeline_rate(model_file: Path, precision: str, batch: int, seconds: float, streams: int) -> float:
    """OpenVINO's THROUGHPUT pipeline: ``2 * streams`` requests of ``batch`` images kept in flight."""
    import openvino as ov

    compiled = compile_streams(model_file, precision, streams)
    queue = ov.AsyncInferQueue(compiled, 2 * streams)
    data = np.zeros([batch, 3, 224, 224], np.float32)
    for _ in range(2 * len(queue)):
        queue.start_async({0: data})
    queue.wait_all()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: data})
        done += batch
    queue.wait_all()
    return done / (time.perf_counter() - start)


def layer_kernels(model_file: Path, precision: str) -> dict[str, int]:
    """Convolutions and matmuls of the compiled model by the kernel OpenVINO runs (its runtime graph),
    e.g. ``Convolution u8 brgconv_avx512_amx_1x1_I8``: whether int8 layers run int8, on AMX or not."""
    classify = OpenVinoClassifier(model_file=model_file, precision=precision)
    counts: Counter[str] = Counter()
    for op in classify.compiled.get_runtime_model().get_ordered_ops():
        info = {key: op.get_rt_info()[key].astype(str) for key in ("layerType", "runtimePrecision", "primitiveType")}
        if info["layerType"] in ("Convolution", "FullyConnected"):
            counts[" ".join(info.values())] += 1
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fp32 ONNX or IR")
    parser.add_argument("--int8", type=Path, help="the int8 (QDQ) model of the same weights")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = available_cores()
    print(f"{cores} cores")
    results: dict[str, object] = {"cores": cores}
    models = {
        ("bf16" if "BF16" in cpu_capabilities() else "fp32"): args.model,
        **({"int8": args.int8} if args.int8 else {}),
    }
    for precision, model_file in models.items():
        table = {}
        for streams in STREAMS:
            if streams > cores:
                continue
            if streams == 1:
                classify = OpenVinoClassifier(model_file=model_file, precision=precision, threads=available_cores())
            else:
                classify = SplitClassifier(model_file, precision, streams)
            row = [rate(classify, np.random.rand(b, 3, 224, 224).astype(np.float32), args.seconds) for b in BATCHES]
            table[streams] = row
            figures = "  ".join(f"b{b} {r:.0f}" for b, r in zip(BATCHES, row, strict=True))
            print(f"{precision} {streams} stream(s): {figures}")
        results[f"{precision}-split"] = table
        for batch, streams in ((1, max(1, cores)), (1, max(1, cores // 4)), (8, max(1, cores // 4))):
            value = pipeline_rate(model_file, precision, batch, args.seconds, streams)
            results[f"{precision}-pipeline-b{batch}-s{streams}"] = value
            print(f"{precision} OpenVINO pipeline, batch {batch}, {streams} streams: {value:.0f} img/s")
    for precision, model_file in models.items():
        results[f"{precision}-kernels"] = layer_kernels(model_file, precision)
        print(f"{precision} kernels:", results[f"{precision}-kernels"])
    from resnet_serve.bench import in_process_ceiling

    image = args.image.read_bytes()
    share = cores - cores // 4  # as host.classifier_share from 8 cores; below, to see the effect at all
    for precision, model_file in models.items():
        # decode threads beside the classifier's: every core for both (oversubscribed under load),
        # the classifier on three quarters, or each on its own share
        for classifier_threads, decode_threads in dict.fromkeys(
            ((cores, cores), (share, cores), (share, max(1, cores - share)))
        ):
            classify = OpenVinoClassifier(model_file=model_file, precision=precision, threads=classifier_threads)
            for batch in (8, 32):
                point = in_process_ceiling([image], args.model, args.seconds * 2, batch, threads=decode_threads,
                                           classify=classify)  # fmt: skip
                key = f"{precision}-e2e-b{batch}-classifier{classifier_threads}-decode{decode_threads}"
                results[key] = point.img_per_s
                print(f"{precision} decode + classify, batch {batch}, classifier {classifier_threads} threads, "
                      f"decode {decode_threads}: {point.img_per_s:.0f} img/s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
