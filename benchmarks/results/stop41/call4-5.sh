# stop 41 calls 4 and 5, on call 3's warm H100 (its build/gpu/model.pt2 from `gpu.py --aoti`): the
# package run plainly (no CUDA graph: capturing it fails) against the eager fp16 CUDA graph, batches
# 8,64,256 (call 4) then 1,16,32,128 (call 5, BATCHES="1,16,32,128").
export CXX=/usr/bin/g++ PYTHONPATH=$PWD/src
BATCHES=${BATCHES:-8,64,256} timeout 150 python3 -c "
import os, time, torch
from pathlib import Path
from resnet_serve.aoti import load
from resnet_serve.torch_classifier import GraphedClassifier, load_state_dict_model
batches = [int(b) for b in os.environ['BATCHES'].split(',')]
d = torch.device('cuda'); t = time.perf_counter(); m = load(Path('build/gpu/model.pt2'), d)
print('load', round(time.perf_counter() - t, 1), flush=True)
e = GraphedClassifier(load_state_dict_model('build/gpu/resnet50.pt', d, torch.float16), d, torch.float16, buckets=batches)
def rate(f, x, n):
    for _ in range(3): f(x)
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): f(x)
    torch.cuda.synchronize(); return len(x) * n / (time.perf_counter() - t)
with torch.inference_mode():
    for b in batches:
        x = torch.randn(b, 3, 224, 224, device=d).half().contiguous(memory_format=torch.channels_last)
        print(b, 'eager graph', round(rate(e, x, max(20, 4096 // b))), 'aoti plain', round(rate(m, x, max(20, 4096 // b))), flush=True)
" 2>&1 | grep -v Warn | tee $OUT/quick.txt
