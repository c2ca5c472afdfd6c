# issue 28/30 call B: nvImageCodec installed; photos at 64/256 in flight (resize chunking); 8 img/req both kernel choices
. /tmp/triton/env.sh
python3 -m pip install -q --no-index --no-deps .whl/gpuw/*.whl
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
python3 -c "from nvidia import nvimgcodec; print('nvimgcodec', nvimgcodec.__version__)" > $OUT/nvimg.txt 2>&1
timeout 560 python3 benchmarks/gpu.py --out /tmp/outB --photo /tmp/data/mug.jpg --seconds 5 --preprocess-processes 0 --concurrency 1,8,64,256,512 --runs fused-photo,fused-gpu-x8,fused-tuned-x8 > $OUT/b.txt 2>&1
tar czf $OUT/b.tgz -C /tmp/outB .
tail -45 $OUT/b.txt
