"""Where does aoti_load_package crash on the GPU machine's torch 2.11? A small CPU model: compile, then
load in this process (step 'same') or only load (step 'load')."""

import sys

import torch

path = "/tmp/small.pt2"
if sys.argv[1] == "compile":
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    model(torch.randn(2, 3, 16, 16))
    exported = torch.export.export(model.eval(), (torch.randn(2, 3, 16, 16),))
    print(torch._inductor.aoti_compile_and_package(exported, package_path=path), flush=True)
    sys.argv[1] = "load"
if sys.argv[1] == "load":
    print("loading", flush=True)
    runner = torch._inductor.aoti_load_package(path)
    print("loaded", flush=True)
    print(runner(torch.randn(2, 3, 16, 16)).shape, flush=True)
