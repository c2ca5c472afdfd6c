"""Finding ``tritonserver``, and the environment it runs in.

Where the server comes from, in order: ``--server PATH`` (or ``$TRITON_SERVER``), ``tritonserver`` on
PATH, or the binary bundled in the ``nvidia-pytriton`` wheel (installed with ``--no-deps``; only its
server is used). Finding writes nothing: the bundled server's Python-backend stub is installed by
:meth:`ServerBinary.install_python_stub`, a step of starting the server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from resnet_serve.errors import ResnetServeError


class ServerError(ResnetServeError):
    """The server could not be found, started or made ready."""


@dataclass(frozen=True, kw_only=True)
class ServerBinary:
    """A tritonserver executable, its backends and the environment it needs."""

    executable: Path
    backend_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    python_stub: Path | None = None  # bundled server: the stub built for this Python, copied in at start

    def install_python_stub(self) -> None:
        """Put the Python-backend stub built for this interpreter next to the bundled Python backend."""
        if self.python_stub is None:
            return
        target = self.backend_dir / "python" / "triton_python_backend_stub"
        for binary in (self.executable, self.python_stub):
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | 0o111)
        if not target.is_file() or target.stat().st_size != self.python_stub.stat().st_size:
            shutil.copy2(self.python_stub, target)


def _bundled_server(backend_dir: str | Path | None) -> ServerBinary | None:
    """The tritonserver inside the nvidia-pytriton wheel, with the stub for this Python."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    executable = root / "bin" / "tritonserver"
    if not executable.is_file():
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"the bundled tritonserver has no Python-backend stub for Python {version}")
    return ServerBinary(
        executable=executable,
        backend_dir=Path(backend_dir) if backend_dir else root / "backends",
        env={"LD_LIBRARY_PATH": str(package.parent / "nvidia_pytriton.libs")},
        python_stub=stub,
    )


def find_server(server: str | Path | None = None, backend_dir: str | Path | None = None) -> ServerBinary:
    """Locate tritonserver: an explicit path, $TRITON_SERVER, PATH, then the nvidia-pytriton wheel."""
    server = server or os.environ.get("TRITON_SERVER")
    backend_dir = backend_dir or os.environ.get("TRITON_BACKENDS")
    if server:
        executable = Path(server)
        if not (executable.is_file() and os.access(executable, os.X_OK)):
            raise ServerError(f"--server {server} is not an executable file")
    elif found := shutil.which("tritonserver"):
        executable = Path(found)
    else:
        bundled = _bundled_server(backend_dir)
        if bundled is None:
            raise ServerError(
                "no tritonserver found: pass --server PATH, put tritonserver on PATH, or "
                "`pip install --no-deps nvidia-pytriton` (see the README)"
            )
        return bundled
    default_backends = executable.resolve().parent.parent / "backends"
    return ServerBinary(executable=executable, backend_dir=Path(backend_dir) if backend_dir else default_backends)


def server_environment(binary: ServerBinary) -> dict[str, str]:
    """The environment for the server: its libraries, and this Python first on PATH.

    The Python-backend stub imports packages from the first ``python`` on PATH, so the active
    virtual environment (with numpy < 2, Pillow, onnxruntime and resnet_serve) must come first.
    """
    env = dict(os.environ)
    library_dirs = [
        binary.env.get("LD_LIBRARY_PATH", ""),
        sysconfig.get_config_var("LIBDIR") or "",
        env.get("LD_LIBRARY_PATH", ""),
    ]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in library_dirs if d)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
