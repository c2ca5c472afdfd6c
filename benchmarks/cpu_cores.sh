#!/usr/bin/env bash
# Issue 31: the CPU repository on every core it is given. From the repository root, after
# `make install` (or where the server is on PATH and src/ importable, with PYTHON=python3):
#   bash benchmarks/cpu_cores.sh in-process MODEL INT8_MODEL IMAGE OUTDIR [SECONDS]
#   bash benchmarks/cpu_cores.sh served MODEL INT8_MODEL IMAGE OUTDIR [SECONDS] [LABEL='OPTIONS' ...]
# in-process: benchmarks/cpu_cores.py (one stream against batches split across streams, OpenVINO's
# own pipeline, which kernels the int8 model runs, decode + classify). served: `resnet-serve bench`
# of each repository variant (LABEL='repo options'; default: the defaults, 'ours', and int8) at
# 1, 8, 32, 64 in flight and at 8 images per request with 16 in flight, beside the in-process
# ceilings (bf16/auto at batch 8 and 32, int8 at 8), with the peak RSS of tritonserver and its stubs
# per variant. The load comes from 2 client processes on 8+ cores, else 1 (CLIENTS= to choose).
set -euo pipefail
phase=$1 model=$2 int8=$3 image=$4 out=$5 seconds=${6:-6}
shift $(($# < 6 ? $# : 6))
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
echo "$(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p'); amx: $(grep -c amx_int8 /proc/cpuinfo || true) threads"
if [ "$phase" = in-process ]; then
  $py benchmarks/cpu_cores.py --model "$model" --int8 "$int8" --image "$image" --seconds "$seconds" \
    --json "$out/in-process.json" 2>&1 | tee "$out/in-process.txt"
  exit
fi
clients=${CLIENTS:-$(($(nproc) >= 8 ? 2 : 1))}
bench() { $py -m resnet_serve.cli bench "$image" --onnx "$model" --int8-onnx "$int8" --seconds "$seconds" \
            --warmup 2 --client-processes "$clients" "$@"; }
peak() {  # the largest summed RSS (MiB) of tritonserver and its stubs, sampled every second
  local top=0 now; while sleep 1; do
    now=$(ps -eo rss=,comm= | awk '/tritonserver|triton_python/ {s += $1} END {print int(s / 1024)}')
    [ "$now" -gt "$top" ] && top=$now && echo "$top" > "$out/peak-rss-$label.txt"; done
}
for ceiling in b8=8 b32=32 int8-b8='8 --precision int8'; do
  read -ra options <<< "${ceiling#*=}"
  bench --setup in-process --in-process-batch "${options[@]}" --json "$out/in-process-${ceiling%%=*}.json" \
    | tee "$out/in-process-${ceiling%%=*}.txt"
done
[ $# -gt 0 ] || set -- "ours=--setup ours" "int8=--setup int8"
for variant in "$@"; do
  label=${variant%%=*}; read -ra options <<< "${variant#*=}"
  [[ " ${options[*]} " == *" --setup "* ]] || options+=(--setup ours)
  echo 0 > "$out/peak-rss-$label.txt"; peak & sampler=$!; trap 'kill $sampler 2>/dev/null' EXIT
  bench "${options[@]}" --concurrency 1,8,32,64 --json "$out/served-$label.json" | tee "$out/served-$label.txt"
  bench "${options[@]}" --concurrency 16 --images-per-request 8 --json "$out/served8-$label.json" \
    | tee "$out/served8-$label.txt"
  kill $sampler; echo "$label: peak RSS of tritonserver + stubs $(cat "$out/peak-rss-$label.txt") MiB" | tee -a "$out/peak-rss.txt"
done
