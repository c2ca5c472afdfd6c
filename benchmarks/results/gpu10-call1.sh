# issue 30 call A: blocking synchronization, before (HEAD) and after (this tree), fused profile, one call
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
mkdir -p /tmp/data /tmp/outA && cp .whl/img/mug.jpg /tmp/data/ && rm -rf /tmp/before && cp -r .whl/before /tmp/before
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; lscpu | grep 'Model name'; python3 -c 'import torch; print(torch.__version__)'; } > $OUT/gpu.txt 2>&1
common="--photo /tmp/data/mug.jpg --seconds 5 --preprocess-processes 0 --concurrency 1,8,64,256,512 --runs fused-gpu,fused-gpu-x8"
echo /tmp/before/src > $site/resnet_serve_src.pth
(cd /tmp/before && timeout 285 python3 benchmarks/gpu.py --out /tmp/outA/before $common) > $OUT/a-before.txt 2>&1
echo "$PWD/src" > $site/resnet_serve_src.pth
timeout 285 python3 benchmarks/gpu.py --out /tmp/outA/after $common > $OUT/a-after.txt 2>&1
tar czf $OUT/a.tgz -C /tmp/outA .
