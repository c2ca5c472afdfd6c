# issue 28/30 call C: the GPU tests on one H200, nvImageCodec installed, this tree
. /tmp/triton/env.sh
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
timeout 580 python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider -rs > $OUT/tests.txt 2>&1
tail -30 $OUT/tests.txt
