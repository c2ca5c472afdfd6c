set -x
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); echo "$PWD/src" > $site/resnet_serve_src.pth
python3 -m pip install -q --no-index --no-deps .whl/gpuw/*.whl .whl/sj/*.whl 2>&1 | tail -2
mkdir -p /tmp/data && cp .whl/img/mug.jpg /tmp/data/
nvidia-smi --query-gpu=name --format=csv
python3 benchmarks/gpu_cut_scans.py --photo /tmp/data/mug.jpg 2>&1 | grep -v Warning | tee $OUT/probe.txt
