#!/usr/bin/env bash
# The GPU benchmark of record, in ONE call on the lent GPU machine (see benchmarks/RESULTS.md).
# Prepare here, from the repository root (all under the git-ignored .whl/):
#   ../shared/tools/device-site.sh                      # .whl/triton.tgz: tritonserver, numpy<2, tritonclient
#   mkdir -p .whl/data .whl/wheels && cp ../shared/data/mug.jpg .whl/data/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 pytest pluggy iniconfig packaging -d .whl/wheels
# Then run there with carry [".whl"]:  bash benchmarks/gpu.sh   (results under $OUT)
set -euo pipefail
mkdir -p /tmp/triton && tar xf .whl/triton.t?z -C /tmp/triton && . /tmp/triton/env.sh  # .tgz, or .txz (xz: smaller)
python3 -m pip install -q --no-index --no-deps .whl/wheels/*.whl 2>/dev/null || true
# Optional nvImageCodec (the [gpu] extra) in .whl/gpu-wheels/: with triton.tgz it exceeds the 64 MiB a call
# carries, so recompress triton.tgz to triton.txz first (benchmarks/results/gpu-multi-gpu.md).
python3 -m pip install -q --no-index --no-deps .whl/gpu-wheels/*.whl 2>/dev/null || true
# The Python-backend stub ignores PYTHONPATH: make resnet_serve importable through a .pth file.
echo "$PWD/src" > "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/resnet_serve_src.pth"
export RESNET_SERVE_TEST_DATA="$PWD/.whl/data"
out=${OUT:-build/gpu-results}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision, numpy, onnxruntime; print(torch.__version__, torchvision.__version__, numpy.__version__, onnxruntime.__version__)" | tee -a "$out/gpu.txt"
if [ -z "${SKIP_TESTS:-}" ]; then
  python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider -rs 2>&1 | tail -25 | tee "$out/gpu-tests.txt" || true
fi
python3 benchmarks/gpu.py --out "$out" "$@" 2>&1 | tee "$out/gpu-bench.txt"
tar czf "$out/server-logs.tgz" build/gpu/bench/*/tritonserver.log 2>/dev/null || true
