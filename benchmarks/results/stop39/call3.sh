# stop 39 call 3: what reading every JPEG's scans on the host costs served (fused, photos and 8 x 500x375)
. /tmp/triton/env.sh
export PYTHONUNBUFFERED=1 RESNET_SERVE_TEST_DATA=/tmp/data
timeout 570 python3 benchmarks/gpu.py --out /tmp/outC --photo /tmp/data/mug.jpg --seconds 5 --preprocess-processes 0 --concurrency 1,8,64,256,512 --runs fused-gpu-x8,fused-checked-x8,fused-photo,fused-photo-checked > $OUT/c.txt 2>&1
tar czf $OUT/c.tgz -C /tmp/outC .
tail -45 $OUT/c.txt
