# stop 41 call 3: the classifier compiled by AOTInductor (repo --compiler aoti) against the fp16 CUDA
# graph, alone and served (fused profile, 1 and 8 images per request), then the GPU tests of the compiled
# repository with what time is left. CXX=/usr/bin/g++: call 2 found that the image's CXX (/opt/gcc)
# builds packages that crash on load. Carry .whl/triton.tgz, .whl/sj, .whl/data.
set -u
start=$SECONDS
export PYTHONUNBUFFERED=1 CXX=/usr/bin/g++
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
python3 -m pip install -q --no-index --no-deps .whl/sj/*.whl
site=$(python3 -c 'import site; print(site.getsitepackages()[0])'); echo "$PWD/src" > "$site/resnet_serve_src.pth"
export RESNET_SERVE_TEST_DATA=$PWD/.whl/data
timeout 430 python3 benchmarks/gpu.py --out /tmp/out3 --photo .whl/data/mug.jpg --seconds 4 --preprocess-processes 0 \
  --concurrency 1,64,256,512 --aoti --runs fused-gpu-x8,fused-aoti-x8,fused-aoti,fused-gpu 2>&1 \
  | grep -v "AUTOTUNE\|triton_\|strides\|dtypes\|select_algorithm\|Autotune Choices\|SingleProcess" > $OUT/bench.txt
cp /tmp/out3/*.json $OUT/ 2>/dev/null
timeout $((575 - (SECONDS - start))) python3 -m pytest -q -p no:cacheprovider -rs --durations=5 \
  "tests/test_gpu.py::test_gpu_ensemble_serves_the_same_logits[fused-on-aoti]" tests/test_aoti.py > $OUT/tests.txt 2>&1
tail -45 $OUT/bench.txt; tail -12 $OUT/tests.txt
