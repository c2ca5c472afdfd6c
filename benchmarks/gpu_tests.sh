#!/usr/bin/env bash
# tests/test_gpu.py on the lent GPU machine (not CI): tritonserver from .whl/triton.tgz (made here by
# ../shared/tools/device-site.sh), this tree's src/ on the path, mug.jpg from .whl/data. Carry .whl; run
#   bash benchmarks/gpu_tests.sh [PYTEST -k EXPRESSION]     (its output also goes to $OUT/test_gpu.txt)
set -u
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
# serve's HTTP front needs aiohttp; where the machine lacks it, its wheels travel in .whl/aio (pip download
# aiohttp --python-version 3.12 --only-binary=:all: -d .whl/aio), installed without an index.
python3 -c 'import aiohttp' 2>/dev/null || python3 -m pip install -q --no-index --find-links .whl/aio aiohttp
site=$(python3 -c 'import site; print(site.getsitepackages()[0])')
echo "$PWD/src" > "$site/resnet_serve_src.pth"
export RESNET_SERVE_TEST_DATA=$PWD/.whl/data PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, torchvision, numpy; print(torch.__version__, torchvision.__version__, numpy.__version__)'
python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider -rs -s -k "${1:-}" --durations=10 2>&1 | tee "$OUT/test_gpu.txt" | grep -v "^\s*warnings.warn\|DeprecationWarning"
