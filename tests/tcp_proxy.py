"""A TCP proxy on loopback for the tests: a real connection between a client and a server that the
test can cut (every open connection closed at once) and keep down for a while (new connections are
accepted and closed at once), like a network blip or a server restart seen from the client; or whose
next answer to a given command is lost after the server carried the command out (the connection is
cut instead of the answer going through), like a server killed between its work and its reply."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.cuts = 0
        self._down_until = 0.0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._lose: bytes | None = None  # the next non-empty answer to a command with these bytes is lost
        self.lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_reply(self, command: bytes) -> None:
        """The next answer to a command containing ``command`` that is not empty (a RESP null: a blocking
        read that found nothing) never reaches the client: that connection is cut instead."""
        with self._lock:
            self._lose = command

    def cut(self, down_for: float = 0.0) -> None:
        """Close every open connection; refuse new ones for ``down_for`` seconds."""
        with self._lock:
            self._down_until = time.monotonic() + down_for
            self.cuts += 1
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, server))
            asked: list[bytes] = []  # the last command the client sent on this connection
            for a, b, answers in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, asked, answers), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, asked: list[bytes], answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if not answers:
                    asked[:] = [data]
                elif self._losing(asked, data):
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


    def _losing(self, asked: list[bytes], answer: bytes) -> bool:
        with self._lock:
            if self._lose is None or not asked or self._lose not in asked[0] or answer[:1] == b"_" \
                    or answer.startswith((b"*-1", b"*0", b"%0")):
                return False
            self._lose = None
            self.lost += 1
            return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
