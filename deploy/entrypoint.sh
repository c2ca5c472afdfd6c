#!/usr/bin/env bash
# Container start: build the TensorRT plan for this GPU once (cached in /cache), write the model
# repository, then serve on all interfaces under resnet-serve's supervision.
set -euo pipefail
plan=/cache/resnet50-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '_').plan
if [ ! -s "$plan" ]; then
  resnet-serve engine --onnx /opt/resnet_serve/resnet50.onnx --output "$plan.tmp" --max-batch 256
  mv "$plan.tmp" "$plan"
fi
resnet-serve repo --target ngc --plan "$plan" --output /models
exec resnet-serve serve --repository /models --public --log-file /dev/stdout \
  --server /opt/tritonserver/bin/tritonserver --backend-directory /opt/tritonserver/backends -- "$@"
