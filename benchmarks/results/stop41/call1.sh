# stop 41 call 1: the AOTInductor probe (plain environment), then tests/test_aoti.py and the served
# test of a compiled repository under the Triton bundle's environment. Carry .whl/triton.tgz, .whl/sj, .whl/data.
set -u
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
 python3 -c "import torch,torchvision;print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torchvision.__version__)") > $OUT/machine.txt 2>&1
PYTHONPATH=$PWD/src python3 benchmarks/results/stop41/gpu_aoti_probe.py --out /tmp/probe --seconds 330 --compile-timeout 200 2>&1 \
  | grep -v "AUTOTUNE\|triton_\|strides\|dtypes\|select_algorithm\|Autotune Choices\|SingleProcess" | tail -c 30000 > $OUT/probe-stdout.txt
cp /tmp/probe/aoti-probe.txt $OUT/; ls -la /tmp/probe >> $OUT/machine.txt
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
python3 -m pip install -q --no-index --no-deps .whl/sj/*.whl
site=$(python3 -c 'import site; print(site.getsitepackages()[0])'); echo "$PWD/src" > "$site/resnet_serve_src.pth"
export RESNET_SERVE_TEST_DATA=$PWD/.whl/data
timeout 230 python3 -m pytest -q -p no:cacheprovider -rs --durations=5 tests/test_aoti.py \
  "tests/test_gpu.py::test_gpu_ensemble_serves_the_same_logits[fused-on-aoti]" > $OUT/tests.txt 2>&1
cat $OUT/aoti-probe.txt; tail -15 $OUT/tests.txt
