# stop 39 call 2: every GPU test on this stop's code (strict JPEG decode, gpu_jpeg_check, fused CPU profile code paths)
mkdir -p /tmp/triton && tar xzf .whl/triton.tgz -C /tmp/triton && . /tmp/triton/env.sh
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); echo "$PWD/src" > $site/resnet_serve_src.pth
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data; mkdir -p /tmp/data && cp .whl/img/mug.jpg /tmp/data/
python3 -c "import simplejpeg; from nvidia import nvimgcodec; print('simplejpeg', simplejpeg.__version__, 'nvimgcodec', nvimgcodec.__version__)"
timeout 560 python3 -m pytest -q -p no:logging -rs tests/test_gpu.py 2>&1 | grep -v Warning | tee $OUT/tests.txt | tail -25
