# stop 39 call B: the fused CPU profile against the two steps on 16 cores (bf16 by the chip), 1 image/request
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
export PYTHONUNBUFFERED=1; python3 -m pip install -q --no-index --no-deps .whl/sj/*.whl
python3 benchmarks/make_images.py /tmp/m/img --photo /tmp/m/mug.jpg | tail -1
python3 -m resnet_serve.cli export --random-weights -o /tmp/m/resnet50.onnx 2>&1 | tail -1
python3 -m resnet_serve.cli export --arch mobilenet_v3_large --random-weights -o /tmp/m/mobilenet_v3_large.onnx 2>&1 | tail -1
{ nproc; lscpu | grep 'Model name'; grep -c amx_int8 /proc/cpuinfo; } > $OUT/machine.txt
for arch in mobilenet_v3_large resnet50; do
  timeout 150 python3 -m resnet_serve.cli bench /tmp/m/img/mug_500x375.jpg --onnx /tmp/m/$arch.onnx --setup ours --setup fused \
    --setup in-process --concurrency 1,8,64 --seconds 4 --warmup 2 --client-processes 2 2>&1 | tee $OUT/$arch-x1.txt | grep -E "^(ours|fused|in-pro)"
done
