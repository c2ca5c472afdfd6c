"""The README's commands stay runnable: every `resnet-serve` line in the docs' shell blocks parses, and
the quick start, pasted verbatim into bash, works against a real server."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from resnet_serve.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def cli_lines(page: Path) -> list[str]:
    lines = []
    for block in blocks(page, "sh"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip().removesuffix("&").strip()
            if line.startswith("resnet-serve "):
                lines.append(line)
    return lines


def test_the_readme_is_read_in_five_minutes_and_links_only_to_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    for target in re.findall(r"\]\(([^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_every_resnet_serve_line_in_a_shell_block_parses():
    parser = build_parser()
    lines = [(page.name, line) for page in PAGES for line in cli_lines(page)]
    assert len(lines) >= 4  # the quick start's at least
    for name, line in lines:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except SystemExit:
            pytest.fail(f"{name}: {line!r} does not parse")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.server
def test_the_quick_start_pasted_verbatim_works(tmp_path, images):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    if not all(port_free(port) for port in (8000, 8001, 8002)):
        pytest.skip("the quick start uses the default ports 8000-8002, and one is taken here")
    readme = ROOT / "README.md"
    setup, curl = blocks(readme, "sh")[:2]
    (python,) = blocks(readme, "python")[:1]
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "mine.pt")  # the user's weights
    (tmp_path / "photo.jpg").write_bytes(images["mug_500x375.jpg"])  # the user's photo
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = f"set -e\n{setup}\n{curl}\npython - <<'PYTHON'\n{python}PYTHON\nkill %1\nwait\n"
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '"datatype":"BYTES","shape":[1,3]' in result.stdout
    assert re.search(r'"data":\["[-0-9.e]+:[0-2]:(cat|dog|fox)"', result.stdout), result.stdout[-2000:]
    assert result.stdout.rstrip().splitlines()[-1] in ("cat", "dog", "fox")  # the Python example's print
    for label in ("cat", "dog", "fox"):
        assert label in result.stdout
