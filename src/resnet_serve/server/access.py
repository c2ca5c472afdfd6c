"""Who may reach which tritonserver API: the admin key, the restricted-API categories, HTTP's address.

Measured against tritonserver 2.51 (issue 14; tests/test_hardening.py keeps each fact checked):

- Triton's HTTP front end (libevhtp) crashes on single small requests: an infer body whose JSON
  nests 50,000 arrays deep (SIGSEGV), ``"shape": [1, 2**62]`` (std::bad_alloc), a 4 MiB body sent
  as ``application/x-www-form-urlencoded`` to the infer path, to ``/v2/repository/index`` and to
  the metrics port (SIGSEGV). 2.51's ``--help`` lists no body-size or depth limit, and no API
  restriction stops them (they crash before any check). So tritonserver runs without HTTP
  (``--allow-http=false``) and serve answers HTTP itself (http_front.py: every request checked,
  then sent over gRPC); Triton's metrics listen on a Unix socket in a directory only serve's user
  may enter (process.py), relayed by the status front.
- gRPC parses with protobuf (bounded depth, sizes checked against the bytes sent): the same
  payloads get clean errors. It is the public protocol.
- Shared memory: any client could register the Python stub's own region (its name shows in
  ``ps``) and point an output at it; the next request aborts the server (HTTP and gRPC alike).
  Logging and trace settings change the server for everyone; model control loads and unloads.
  These categories need the admin key; without one given, the key is random and known to this
  process only (``serve`` uses it to reload a model whose stub died), so they are closed.
- Open to everyone: inference, health, metadata, model-config (the example's client.py reads
  metadata and config) and statistics (read-only counters, as on the metrics endpoint; our bench
  reads them). None of them crashed the server over gRPC.
"""

from __future__ import annotations

import ipaddress
import secrets

from resnet_serve.errors import ResnetServeError

ADMIN_APIS = ("model-repository", "shared-memory", "logging", "trace")
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton expects restricted-API headers under this prefix on gRPC
LOOPBACK = "127.0.0.1"


class AccessError(ResnetServeError):
    """A malformed admin key."""


def private_key() -> str:
    """An admin key (HEADER=VALUE) nobody else knows."""
    return f"resnet-serve-admin={secrets.token_urlsafe(24)}"


def parse_key(key: str, source: str = "--model-control-key") -> tuple[str, str]:
    """``HEADER=VALUE`` -> (lower-case header, value); the error names ``source``, never the key."""
    header, _, value = key.partition("=")
    if not (header and value) or any(c in header for c in ",:= "):
        raise AccessError(f"{source}: the key must be HEADER=VALUE, a header name without ',', ':' or spaces")
    return header.lower(), value


def restricted_api_args(key: str) -> list[str]:
    """Triton arguments that put the admin categories behind ``key`` on gRPC (its only protocol)."""
    header, value = parse_key(key)
    return [f"--grpc-restricted-protocol={','.join(ADMIN_APIS)}:{header}={value}"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_host(host: str, public_http: bool) -> str:
    """Where serve's HTTP front listens: ``host`` when loopback or asked for, else 127.0.0.1."""
    return host if public_http or is_loopback(host) else LOOPBACK
