"""Do GPU instances agree to the bit, and what does it cost? cuDNN kernels timed at load (tuned)
against cuDNN's heuristics (deterministic, the default), each in several processes as served.

    python benchmarks/gpu_determinism.py --processes 4 --json out.json

Each process builds the fixed-seed random ResNet-50 as a served instance does (fp16, channels_last,
one CUDA graph per bucket), computes the logits of the same inputs at each bucket, and times the
classifier alone at batch 8 and 256. Prints, per mode, how many different answers the processes gave
per bucket (1: every instance agrees) and the img/s, median over processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import statistics
import time
from pathlib import Path

BUCKETS = (1, 8, 64, 256)
TIMED = (8, 256)


def one_instance(deterministic: bool) -> dict:
    import torch

    from resnet_serve.model.weights import random_resnet50
    from resnet_serve.torch_classifier import GraphedClassifier

    device = torch.device("cuda")
    model = random_resnet50().model.to(device=device, dtype=torch.float16, memory_format=torch.channels_last)
    classifier = GraphedClassifier(model, device, torch.float16, buckets=BUCKETS, deterministic=deterministic)
    inputs = torch.randn(max(BUCKETS), 3, 224, 224, generator=torch.Generator().manual_seed(0))
    answers = {}
    for bucket in BUCKETS:
        logits = classifier(inputs[:bucket]).cpu().numpy()
        answers[bucket] = hashlib.sha256(logits.tobytes()).hexdigest()[:16]
    speed = {}
    for batch in TIMED:
        chunk = inputs[:batch].to(device).half()
        for _ in range(5):
            classifier(chunk)
        torch.cuda.synchronize()
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < 2.0:
            classifier(chunk)
            calls += 1
        torch.cuda.synchronize()
        speed[batch] = batch * calls / (time.perf_counter() - start)
    return {"answers": answers, "img_per_s": speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=4, help="instances per mode (default 4)")
    parser.add_argument("--modes", default="tuned,deterministic", help="default tuned,deterministic")
    parser.add_argument("--json", type=Path, help="save the rows here")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")  # a fresh CUDA context and cuDNN choice per instance
    rows = []
    for mode in args.modes.split(","):
        deterministic = {"tuned": False, "deterministic": True}[mode]
        with context.Pool(1, maxtasksperchild=1) as pool:  # one at a time: timings not shared
            results = [pool.apply(one_instance, (deterministic,)) for _ in range(args.processes)]
        row = {
            "mode": mode,
            "distinct_answers": {b: len({r["answers"][b] for r in results}) for b in BUCKETS},
            "img_per_s": {b: round(statistics.median(r["img_per_s"][b] for r in results)) for b in TIMED},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
