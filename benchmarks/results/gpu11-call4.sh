# stop 38 call D: the served GPU tests (MPS, every profile) on the final code: Triton's metrics on a Unix socket
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/src" > $site/resnet_serve_src.pth
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
mkdir -p /tmp/data && cp .whl/img/mug.jpg /tmp/data/
timeout 400 python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider -rs -k "serves_the_same_logits or mps or other_architectures" > $OUT/tests.txt 2>&1
tail -15 $OUT/tests.txt
