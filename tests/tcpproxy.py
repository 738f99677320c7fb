"""A TCP proxy in the test process, to cut a connection without stopping the server behind it.

Usage::

    proxy = TcpProxy(("127.0.0.1", 5432))
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
    proxy.cut()       # every connection dropped, new ones refused
    proxy.restore()   # accepting again, on the same port
    proxy.freeze()    # a black hole: connections stay open, nothing gets through
    proxy.thaw()      # what was held goes through, as TCP's retransmits would carry it
"""

from __future__ import annotations

import random
import socket
import threading
import time

#: Ports handed out by `free_port`: below Linux's ephemeral range (32768-60999), from which the
#: kernel picks the local port of every outgoing connection, so that none of the many
#: connections tests make (in this process, the daemons, other xdist workers) can take a port
#: between the moment it is found free and the moment a server binds it.
PORTS = range(20000, 32000)


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server a test starts (a daemon's metrics, a proxy):
    a random one of `PORTS`, so that concurrent test processes rarely try the same one."""
    for _ in range(200):
        port = random.choice(PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use, or lingering after a recent connection
                continue
            return port
    raise RuntimeError(f"no free port found in {PORTS}")


class TcpProxy:
    """Forwards a local port to `target`; `cut()` drops every connection and refuses new
    ones, `restore()` accepts again. The server behind it is never stopped."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        #: Cleared while frozen: data waits in the proxy instead of being forwarded.
        self.flowing = threading.Event()
        self.flowing.set()
        self.restore()

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def restore(self) -> None:
        if self.listener is not None:
            return  # accepting already
        deadline = time.monotonic() + 10
        while True:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:  # the old listener is still being torn down
                listener.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.listener = listener
        self.listener.listen(50)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        if self.listener is None:
            return
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()
        self.listener = None
        with self.lock:
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                self.flowing.wait()
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
