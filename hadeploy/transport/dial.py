"""TCP connections to the hosts' SSH ports, opened in background threads before paramiko is
even imported, so a host's sshd accepts and starts its side of the handshake while the
workstation is still loading the code of the run.

Only the TCP socket is made here, exactly as paramiko would make it (every address the name
resolves to, the connect timeout); the SSH handshake, host-key check and login happen later
on that socket in `transport.ssh`, unchanged. Used only once every refusal before connecting
has passed (`app.Deployment.new_transport`), and only for direct connections: a gateway or
an ssh_config (which may name another host, port or proxy) leaves the dialling to fabric.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Mapping


class Unreachable(OSError):
    """No address of the host accepted the connection (refused or no route), like paramiko's
    NoValidConnectionsError: `errors` maps each address tried to its error."""

    def __init__(self, errors: Mapping[tuple[str, int], OSError]) -> None:
        super().__init__(None, "Unable to connect")
        self.errors = dict(errors)


def dial(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket to `host`:`port`, trying each address it resolves to (IPv4
    and IPv6) as paramiko's SSHClient.connect does; `Unreachable` if all refuse."""
    errors: dict[tuple[str, int], OSError] = {}
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                raise
            errors[(str(address[0]), int(address[1]))] = exc
            continue
        no_delay(sock)
        return sock
    raise Unreachable(errors)


def no_delay(sock: socket.socket) -> None:
    """Send small packets at once: the SSH handshake and every command are exchanges of a
    few small packets, and with Nagle's algorithm against the server's delayed ACKs each
    exchange waited up to ~40 ms (measured: a lab host's handshake 0.09 s, 0.05 s with it)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Dialer:
    """One `dial` per host, each in its own thread, started at construction: `take` hands
    over a host's socket (or raises its error) once; `close` closes those never taken."""

    def __init__(self, addresses: Mapping[str, str], port: int, timeout: float) -> None:
        self.started = time.time()
        self._results: dict[str, socket.socket | BaseException] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        for name, address in addresses.items():
            thread = threading.Thread(target=self._dial, args=(name, address, port, timeout),
                                      name=f"dial-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()

    def _dial(self, name: str, address: str, port: int, timeout: float) -> None:
        try:
            result: socket.socket | BaseException = dial(address, port, timeout)
        except Exception as exc:  # handed to whoever takes the host
            result = exc
        with self._lock:
            self._results[name] = result

    def __contains__(self, name: object) -> bool:
        return name in self._threads

    def take(self, name: str) -> socket.socket:
        """`name`'s connected socket (waiting for its dial), or the dial's error."""
        self._threads.pop(name).join()
        with self._lock:
            result = self._results.pop(name)
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        """Close every socket not taken (after waiting for their dials)."""
        for thread in self._threads.values():
            thread.join()
        self._threads.clear()
        with self._lock:
            for result in self._results.values():
                if isinstance(result, socket.socket):
                    result.close()
            self._results.clear()
