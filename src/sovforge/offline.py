"""Fail-closed network guard and preflight.

sovforge runs inside an air-gapped network. Every CLI entry calls `enforce_offline()` first:

* the Hugging Face / telemetry switches are set so libraries never try a hub (`HF_HUB_OFFLINE=1`, ...);
* `socket.socket.connect` (and `connect_ex`, `socket.create_connection`, `getaddrinfo` for names) refuse any
  address outside loopback, naming the host, unless `--allow-network` was given. Loopback stays open because
  the serve stage, PostgreSQL/Redis and a local Ray head all live there.

This is a guard against accidents (a library phoning home), not a sandbox against hostile code in-process.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


class NetworkBlocked(ConnectionRefusedError):
    """Raised instead of connecting to a non-loopback address while the guard is on."""


_ORIGINALS: dict[str, Any] = {}


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", "ip6-localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _check_address(address: Any, family: int | None = None) -> None:
    if family == getattr(socket, "AF_UNIX", None) or isinstance(address, (str, bytes)):
        return  # unix domain sockets (e.g. PostgreSQL's) never leave the machine
    host = str(address[0]) if isinstance(address, tuple) and address else str(address)
    if not _is_loopback_host(host):
        raise NetworkBlocked(
            f"sovforge offline guard: refused connection to {host} (air-gapped mode; only loopback is allowed). "
            "Pass --allow-network if this machine may reach it."
        )


def enforce_offline(allow_network: bool = False) -> None:
    """Set the offline environment and, unless `allow_network`, install the loopback-only socket guard."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    if allow_network:
        release_guard()
        return
    if _ORIGINALS:
        return  # already installed
    _ORIGINALS["connect"] = socket.socket.connect
    _ORIGINALS["connect_ex"] = socket.socket.connect_ex
    _ORIGINALS["getaddrinfo"] = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        _check_address(address, sock.family)
        return _ORIGINALS["connect"](sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> Any:
        _check_address(address, sock.family)
        return _ORIGINALS["connect_ex"](sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # Refuse name resolution of outside hosts too: a DNS query is itself traffic leaving the enclave.
        if host is not None:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if not _is_loopback_host(name):
                _check_address((name, 0))
        return _ORIGINALS["getaddrinfo"](host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]


def release_guard() -> None:
    """Remove the socket guard (tests; `--allow-network`)."""
    if not _ORIGINALS:
        return
    socket.socket.connect = _ORIGINALS.pop("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _ORIGINALS.pop("connect_ex")  # type: ignore[method-assign]
    socket.getaddrinfo = _ORIGINALS.pop("getaddrinfo")  # type: ignore[assignment]


def guard_active() -> bool:
    return bool(_ORIGINALS)


# ------------------------------------------------------------------------------------------- preflight


def missing_paths(required: Iterable[tuple[str, Path]]) -> list[str]:
    """For (what, path) pairs, the lines describing paths that do not exist."""
    return [f"{what}: {path}" for what, path in required if not Path(path).exists()]
