# issue 28/30 call A: GPU determinism (tuned vs deterministic cuDNN kernels), fused 1 img/req both ways
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/src" > $site/resnet_serve_src.pth
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
mkdir -p /tmp/data /tmp/outA && cp .whl/img/mug.jpg /tmp/data/
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; lscpu | grep 'Model name'; python3 -c 'import torch; print(torch.__version__, torch.backends.cudnn.version())'; } > $OUT/gpu.txt 2>&1
timeout 150 python3 benchmarks/gpu_determinism.py --processes 4 --json $OUT/determinism.json > $OUT/determinism.txt 2>&1
timeout 390 python3 benchmarks/gpu.py --out /tmp/outA --photo /tmp/data/mug.jpg --seconds 5 --preprocess-processes 0 --concurrency 1,8,64,256,512 --runs fused-gpu,fused-tuned > $OUT/a.txt 2>&1
tar czf $OUT/a.tgz -C /tmp/outA .
tail -5 $OUT/determinism.txt; tail -40 $OUT/a.txt
