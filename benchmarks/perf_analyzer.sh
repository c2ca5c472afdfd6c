#!/usr/bin/env bash
# Cross-check `resnet-serve bench` against NVIDIA's perf_analyzer on the same server, image and
# concurrency (benchmarks/RESULTS.md). perf_analyzer ships in the tritonclient 2.51 wheel and runs on
# a CPU machine with Debian's libb64-0d and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12):
#   apt-get install -y libb64-0d
#   pip download --no-deps tritonclient==2.51.0 nvidia-cuda-runtime-cu12 -d /tmp/pa   (then unzip both)
#   PERF_ANALYZER=/tmp/pa/.../bin/perf_analyzer CUDART_DIR=/tmp/pa/.../lib bash benchmarks/perf_analyzer.sh IMAGE [CONCURRENCY]
# Not a dependency of the package: this script alone uses it.
set -euo pipefail
image=${1:?image file}
concurrency=${2:-4}
out=${OUT:-build/perf-analyzer}
mkdir -p "$out"
export LD_LIBRARY_PATH="${CUDART_DIR:?directory of libcudart.so.12}:${LD_LIBRARY_PATH:-}"
.venv/bin/python - "$image" "$out/input.json" <<'PY'
import json, sys
data = open(sys.argv[1], "rb").read()
json.dump({"data": [{"INPUT": {"content": list(data), "shape": [len(data)]}}]}, open(sys.argv[2], "w"))  # batch 1 by -b
PY
.venv/bin/resnet-serve repo --output "$out/model_repository" > /dev/null
.venv/bin/python - "$out" "$concurrency" "$image" <<'PY'
import os, subprocess, sys
from pathlib import Path
from resnet_serve.server import ServerSettings, TritonServer
out, concurrency, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with TritonServer(ServerSettings.on_free_ports((out / "model_repository").resolve())) as server:
    size = Path(image).stat().st_size
    subprocess.run([
        os.environ["PERF_ANALYZER"], "-m", "ensemble_python_resnet50", "-u", server.grpc_url, "-i", "grpc",
        "--input-data", str(out / "input.json"), "--shape", f"INPUT:{size}", "--concurrency-range", concurrency,
        "--measurement-interval", "10000", "--stability-percentage", "25", "-f", str(out / "perf_analyzer.csv"),
    ], check=True)
    subprocess.run([".venv/bin/resnet-serve", "bench", image, "--url", server.grpc_url, "--concurrency", concurrency,
                    "--seconds", "20", "--warmup", "3", "--json", str(out / "bench.json")], check=True)
PY
