"""The error every resnet_serve failure meant for the user derives from."""

from pathlib import Path


class ResnetServeError(Exception):
    """A failure whose message tells the user what went wrong and what to do."""


def not_a_file(what: str, path: Path) -> str:
    """Why ``path``, meant as ``what`` (e.g. "model file"), is no file: "model file X is a folder"."""
    return f"{what} {path} " + ("is a folder" if path.is_dir() else "does not exist")
