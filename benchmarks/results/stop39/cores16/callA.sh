# stop 39 call A (16-core host CPU, GPU unused): OpenVINO installed; random-weight models exported; images
python3 -m pip install -q --no-index --no-deps .whl/ov/*.whl 2>&1 | tail -2
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); echo "$PWD/src" > $site/resnet_serve_src.pth
mkdir -p /tmp/m && cp .whl/img/mug.jpg /tmp/m/
python3 benchmarks/make_images.py /tmp/m/img --photo /tmp/m/mug.jpg | tail -1
python3 -m resnet_serve.cli export --random-weights -o /tmp/m/resnet50.onnx 2>&1 | tail -2
python3 -m resnet_serve.cli export --arch mobilenet_v3_large --random-weights -o /tmp/m/mobilenet_v3_large.onnx 2>&1 | tail -2
ls -la /tmp/m
