"""The one interface every classifier runtime implements for the repository writer.

A runtime answers the same questions whatever it is: the classifier step's name, the files it puts
in the version directory, the precision it will serve, its part of the model config (backend or
platform, instance group, parameters) and, where it has one, its part of the fused model's. The
writer adds what every classifier shares (tensor names and shapes from the contract and the model
card, labels, dynamic batching).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

    from resnet_serve.repository import RepositorySpec

ONNX_FILE = "model.onnx"  # the model's name in a version directory, for the runtimes that read ONNX


def set_parameters(config: mc.ModelConfig, values: Mapping[str, object]) -> None:
    """Triton's string ``parameters`` of a model config (bools as "true"/"false")."""
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        config.parameters[key].string_value = text


@dataclass(frozen=True)
class Runtime:
    """One way to run the classifier step; subclasses fill in :meth:`configure` (and what differs)."""

    kind: str  # the `repo --classifier` value
    step: str  # the step's name after the architecture's in the default model: <arch>_<step> (resnet50_trt)
    runs_on: str  # one line for --help
    model_file: str = ONNX_FILE  # the file's name in the version directory
    source: str | None = None  # triton_models/<source>.py for a Python-backend model; None: a native backend
    fused_source: str | None = None  # triton_models/<fused_source>.py decodes and classifies; None: no fused profile
    reads_onnx: bool = True  # its model file is ONNX (or an OpenVINO IR): the writer checks its shapes

    def files(self, model_file: Path) -> list[tuple[Path, str]]:
        """(source, name in the version directory) of each file the model needs."""
        return [(Path(model_file), self.model_file)]

    def build(self, spec: RepositorySpec, model_file: Path, folder: Path) -> list[tuple[Path, str]]:
        """Files it makes from the model in ``folder`` before anything is written (a compiled package), as
        (source, name in the version directory); refuses what it cannot build (a ResnetServeError)."""
        return []

    def precision(self, requested: str) -> str:
        """The precision this runtime will serve for ``requested``; refuses what it cannot honour."""
        return requested

    def check_model(self, model_file: Path, precision: str) -> None:
        """Refuse a model file it cannot serve at ``precision`` (the resolved one), before anything is written."""

    def configure(self, config: mc.ModelConfig, spec: RepositorySpec) -> None:
        """Its backend or platform, instance group and parameters."""
        raise NotImplementedError

    def fused_parameters(self, spec: RepositorySpec) -> dict[str, object]:
        """Its parameters in the fused model (``fused_source``), beside the decoding ones."""
        return {}

    def in_process(self, spec: RepositorySpec) -> Callable[[np.ndarray], np.ndarray]:
        """The same classifier in this process (the bench's in-process ceiling), where it can run here."""
        raise NotImplementedError(f"the {self.kind} classifier runs only in a server")
