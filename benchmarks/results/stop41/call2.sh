# stop 41 call 2: why aoti_load_package ends in SIGSEGV on the GPU machine (call 1): a backtrace
set -u
f=benchmarks/results/stop41/aoti_crash.py
(python3 $f compile; echo "exit $?") > $OUT/crash.txt 2>&1
(cuda-gdb -q -batch -ex "set pagination off" -ex run -ex bt -ex "info sharedlibrary" --args python3 $f load) > $OUT/gdb.txt 2>&1
(mount | grep -E " /tmp | / "; g++ --version | head -1; ldd --version | head -1
 python3 -c "import torch; print(torch.__version__, torch._C._GLIBCXX_USE_CXX11_ABI, torch.__file__)"
 unzip -l /tmp/small.pt2; env | grep -i -E "^LD_|^CXX|^CC|TORCH|INDUCTOR") > $OUT/env.txt 2>&1
tail -8 $OUT/crash.txt; grep -E "^#|SIG" $OUT/gdb.txt | head -40
