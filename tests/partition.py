"""A TCP relay on loopback that can be cut: the stand-in for a network between a gateway and
its PostgreSQL. Cut, it forwards nothing either way and answers nothing, yet closes nothing:
what a partition looks like to both ends (connections hang, new ones never finish their
handshake with the server). Healed, the bytes held back flow again."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType


class Relay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def cut(self) -> None:
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def _accept(self) -> None:
        while not self._closing.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if not ready:
                continue
            client, _ = self._listener.accept()
            self._sockets.append(client)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        while not self._open.is_set():  # cut: the connection is accepted, never answered
            if self._closing.wait(0.05):
                return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self._sockets.append(server)
        peers = {client: server, server: client}
        with contextlib.suppress(OSError):
            while not self._closing.is_set():
                if not self._open.wait(0.05):
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)

    def __enter__(self) -> Relay:
        self._threads[0].start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(5)
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
