"""Option dataclasses that turn themselves into Triton config parameters and CLI options, and back.

A field declared with :func:`option` carries its help text: :func:`add_arguments` makes it a CLI
option (``max_pixels: int`` -> ``--max-pixels N``; a bool that defaults to True -> ``--no-NAME``; a
``Literal`` -> its choices). Every field of an options object round-trips through Triton's string
``parameters`` (:func:`to_parameters` / :func:`from_parameters`), so adding an option is one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

T = TypeVar("T")
_TRUE = ("true", "1", "yes", "on")


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default that is also a CLI option described by ``help``."""
    return dataclasses.field(default=default, metadata={"help": help})


def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_bool(text: str) -> bool:
    """Triton's yes/no parameter: "true", "1", "yes" and "on" are true."""
    return text.strip().lower() in _TRUE


def _parse(kind: Any, text: str) -> Any:
    if kind is bool:
        return parse_bool(text)
    if kind is int:
        return int(text)
    if typing.get_origin(kind) is tuple:  # e.g. tuple[float, float, float]: "0.485,0.456,0.406"
        return tuple(float(item) for item in text.split(","))
    return text  # str and Literal[...] of strings


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(repr, value))
    return str(value)


def to_parameters(options: Any) -> dict[str, str]:
    """Every field as Triton's string parameter (bools as "true"/"false", tuples comma-separated)."""
    return {
        f.name: _text(value) for f in dataclasses.fields(options) if (value := getattr(options, f.name)) is not None
    }


def from_parameters(cls: type[T], params: Mapping[str, str]) -> T:
    """``cls`` from Triton's string parameters; absent or empty ones keep their defaults."""
    types = _types(cls)
    values = {
        f.name: _parse(types[f.name], params[f.name]) for f in dataclasses.fields(cls) if params.get(f.name, "").strip()
    }
    return cls(**values)


def add_arguments(parser: argparse.ArgumentParser, cls: type, defaults: Any = None) -> None:
    """A CLI option for each field of ``cls`` declared with :func:`option`."""
    types = _types(cls)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        default = getattr(defaults, f.name) if defaults is not None else f.default
        flag = "--" + f.name.replace("_", "-")
        kind = types[f.name]
        if kind is bool:
            if not default:
                raise TypeError(f"{cls.__name__}.{f.name}: a CLI switch must default to True, got {default!r}")
            parser.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", help=f.metadata["help"])
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=default, help=_with_default(f, default))
        else:
            parser.add_argument(flag, type=kind, default=default, help=_with_default(f, default))


def _with_default(f: dataclasses.Field, default: Any) -> str:
    return f"{f.metadata['help']} (default {default})"


def from_arguments(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """``cls`` from the options :func:`add_arguments` added, plus ``values`` for the other fields."""
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            values.setdefault(f.name, getattr(args, f.name))
    return cls(**values)
