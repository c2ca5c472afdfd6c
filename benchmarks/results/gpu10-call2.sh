# issue 30 call B: nvImageCodec installed; the two-step profile (and with a 4 GiB pool), photos, small JPEGs on nvImageCodec
. /tmp/triton/env.sh
python3 -m pip install -q --no-index --no-deps .whl/gpuw/*.whl
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/src" > $site/resnet_serve_src.pth
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
python3 -c "from nvidia import nvimgcodec; print('nvimgcodec', nvimgcodec.__version__)" > $OUT/nvimg.txt 2>&1
timeout 570 python3 benchmarks/gpu.py --out /tmp/outB --photo /tmp/data/mug.jpg --seconds 5 --preprocess-processes 0 --concurrency 1,8,64,256,512 --runs fused-photo,fused-photo-torchvision,gpu,gpu-x8,gpu-x8-pool4g,fused-nvimg > $OUT/b.txt 2>&1
tar czf $OUT/b.tgz -C /tmp/outB .
