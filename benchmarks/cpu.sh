#!/usr/bin/env bash
# CPU benchmark of record (benchmarks/RESULTS.md): ours fp32, ours int8, the seed profile and the
# in-process ceiling, side by side on the same tritonserver binary and images, for mug.jpg and a
# 500x375 JPEG. Run from the repository root after `make install`:  bash benchmarks/cpu.sh [SECONDS]
set -euo pipefail
seconds=${1:-10}
out=build/bench-results
bin=.venv/bin
mkdir -p "$out"
$bin/python benchmarks/make_images.py build/bench-images
$bin/resnet-serve export --random-weights --check-image build/bench-images/mug.jpg \
  --int8 --calibration build/bench-images/calibration --report build/bench-images/calibration
$bin/python benchmarks/preprocess.py --image build/bench-images/mug.jpg | tee "$out/preprocess.txt"
for image in mug.jpg mug_500x375.jpg; do
  name=${image%.jpg}
  $bin/resnet-serve bench "build/bench-images/$image" --setup ours --setup int8 --setup ort-fp32 --setup seed --setup in-process \
    --concurrency 1,2,4,8,16,32 --seconds "$seconds" --warmup 2 \
    --json "$out/cpu-$name.json" --plot "$out/cpu-$name.png" | tee "$out/cpu-$name.txt"
done
