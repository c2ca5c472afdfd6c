"""PyTorch on the GPU: fp16 channels_last with one CUDA graph per batch bucket
(:mod:`resnet_serve.torch_classifier`), built from a state_dict as the model card says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_serve.model_card import ModelCard
from resnet_serve.runtimes.base import Runtime, set_parameters


def model_parameters(card: ModelCard) -> dict[str, object]:
    """What the classifier is built as from its state_dict (torch_classifier.instance_classifier)."""
    return {"arch": card.arch, "num_classes": card.num_classes, "input_size": card.input_size}


@dataclass(frozen=True)
class TorchGpu(Runtime):
    def configure(self, config, spec) -> None:
        from tritonclient.grpc import model_config_pb2 as mc

        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=spec.classifier_instances,
                                  gpus=spec.gpu_ids)  # fmt: skip
        built_as = self.fused_parameters(spec)
        if spec.served_profile == "seed":  # the example's classifier: fp32, eager
            built_as.update(dtype="fp32", cuda_graphs=False)
        set_parameters(config, built_as)
        # Receive the preprocessed batch where it is (GPU) by DLPack instead of a host copy.
        set_parameters(config, {"FORCE_CPU_ONLY_INPUT_TENSORS": "no"})

    def build(self, spec, model_file: Path, folder: Path) -> list[tuple[Path, str]]:
        """With ``--compiler aoti``: the classifier compiled by AOTInductor on the first GPU it serves on,
        and the note of what it was built for."""
        if spec.compiler == "none":
            return []
        from resnet_serve.aoti import PACKAGE_FILE, compile_on_gpu, note_path

        package = folder / PACKAGE_FILE
        compile_on_gpu(model_file, package, card=spec.model_card, dtype=spec.dtype, gpu=spec.gpu_ids[0])
        return [(package, PACKAGE_FILE), (note_path(package), note_path(package).name)]

    def fused_parameters(self, spec) -> dict[str, object]:
        """What the classifier is built as (torch_classifier.instance_classifier), in either model."""
        return {"dtype": spec.dtype, "cuda_graphs": spec.cuda_graphs, "deterministic": spec.deterministic,
                **model_parameters(spec.model_card)}  # fmt: skip


TORCH = TorchGpu(
    "torch", "torch", "python backend + PyTorch fp16 CUDA graphs (GPU; state_dict file)",
    model_file="model.pt", source="classifier_torch", fused_source="fused_gpu", reads_onnx=False,
)  # fmt: skip
