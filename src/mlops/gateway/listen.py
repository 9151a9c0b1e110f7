"""Each gateway worker's own listening socket, so the kernel spreads connections over them.

With one socket shared by every worker, whichever worker wakes first accepts a burst of new
connections, and a client's 16 keep-alive connections may all land on one worker while the
other idles (throughput swung 4x between runs, docs/benchmarks.md). With SO_REUSEPORT each
worker listens on its own socket on the same port and the kernel hashes each connection to
one of them. uvicorn hands its worker processes the sockets to serve by pickling them; this
list pickles as the recipe to open a fresh socket, so each worker (and each restarted one)
binds its own.
"""

from __future__ import annotations

import socket
from typing import Any


class OwnListeners(list[socket.socket]):
    """Stands in for uvicorn's shared sockets: empty here, one new listener in each worker."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        super().__init__()
        self.address = (host, port, backlog)

    def __reduce__(self) -> tuple[Any, ...]:
        return (listen, self.address)


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    sock = _socket(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return [sock]


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on (host, port), checked without SO_REUSEPORT so that another
    server's workers (of the same user) are not silently joined."""
    with _socket(host) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
