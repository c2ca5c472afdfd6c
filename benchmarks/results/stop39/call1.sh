# stop 39 call 1: nvImageCodec and simplejpeg (cp312) installed on the device
python3 -m pip install -q --no-index --no-deps .whl/gpuw/*.whl .whl/sj/*.whl 2>&1 | tail -2
python3 -c "import simplejpeg; from nvidia import nvimgcodec; print('simplejpeg', simplejpeg.__version__, 'nvimgcodec', nvimgcodec.__version__)"
