#!/usr/bin/env bash
# Issue 27: each architecture served with the default CPU repository (OpenVINO, precision by the chip)
# against its in-process ceiling (decode + preprocess + the same classifier, same precision), side by
# side in one run per architecture, on a 500x375 JPEG. Random weights: speed does not depend on them.
# The two-step default (`ours`) and the fused profile (`fused`: decode and classify in one model) both.
# Run from the repository root after `make install`:  bash benchmarks/architectures.sh [SECONDS] [IMAGES_PER_REQUEST] [ARCH...]
set -euo pipefail
seconds=${1:-6}
per_request=${2:-1}
shift $(( $# > 2 ? 2 : $# ))
archs=${*:-resnet50 mobilenet_v3_large efficientnet_b0 convnext_tiny efficientnet_v2_s}
out=build/bench-results
bin=.venv/bin
mkdir -p "$out" build/architectures
$bin/python benchmarks/make_images.py build/bench-images
for arch in $archs; do
  [ -f "build/architectures/$arch.onnx" ] || $bin/resnet-serve export --arch "$arch" --random-weights -o "build/architectures/$arch.onnx"
  $bin/resnet-serve bench build/bench-images/mug_500x375.jpg --onnx "build/architectures/$arch.onnx" \
    --setup ours --setup fused --setup in-process --concurrency 1,2,4,8 --images-per-request "$per_request" \
    --seconds "$seconds" --warmup 2 --json "$out/arch-$arch-x$per_request.json" | tee "$out/arch-$arch-x$per_request.txt"
done
