"""A bounded load of HTTP requests through the VIP, counting what a client sees fail.

Threads send GETs to the lab's APIs through the VIP, each on a new TCP connection (what most
OpenStack clients do between calls), and one more thread sends them on one kept-alive
connection (reconnecting after a failure). A request fails when the connection is refused,
reset or times out, or the status is not the one the API answers when healthy. The loops
stop when told, after `max_requests` per thread or after `max_seconds`: never unbounded.
With `pause`, each thread waits that long between its requests: a change that lasts minutes
still meets thousands of requests, without the clients taking the CPU the change needs.
Only lab addresses are used (the VIP of `lab.inventory`, or another lab address given as
`vip`). With `tls` (an SSL context trusting the lab's CA) every connection is HTTPS, so a
new connection is a new TLS handshake: what a certificate swap must not break.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from lab.inventory import LAB_VIP

#: Keystone's version document and Glance's health check: cheap, no token needed.
OPENSTACK_TARGETS: tuple[tuple[int, str, int], ...] = ((5000, "/v3", 200),
                                                      (9292, "/healthcheck", 200))


@dataclass
class Tally:
    """Requests sent and failed by one kind of client, with a sample of the failures."""

    sent: int = 0
    failed: int = 0
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, problem: str | None) -> None:
        """Count one request (`problem`: why it failed, None if it did not)."""
        with self.lock:
            self.sent += 1
            if problem is not None:
                self.failed += 1
                if len(self.samples) < 5:
                    self.samples.append(problem)

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.failed} failed"


def _get(conn: http.client.HTTPConnection, path: str, expected: int) -> str | None:
    """One GET on `conn`; what went wrong, or None."""
    try:
        conn.request("GET", path, headers={"Host": "vip"})
        reply = conn.getresponse()
        reply.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"{path}: {type(exc).__name__}: {exc}"
    return None if reply.status == expected else f"{path}: status {reply.status}"


@dataclass
class VipLoad:
    """Clients of `targets` (port, path, expected status) through `vip`; see the module."""

    targets: Sequence[tuple[int, str, int]] = OPENSTACK_TARGETS
    clients: int = 3
    max_seconds: float = 240.0
    max_requests: int = 200_000
    pause: float = 0.0
    vip: str = LAB_VIP
    tls: ssl.SSLContext | None = None
    fresh: Tally = field(default_factory=Tally)
    kept: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)

    def _connect(self, port: int) -> http.client.HTTPConnection:
        """A new (not yet connected) client connection to `port` of the VIP."""
        if self.tls is not None:
            return http.client.HTTPSConnection(self.vip, port, timeout=10, context=self.tls)
        return http.client.HTTPConnection(self.vip, port, timeout=10)

    def _goes_on(self, i: int, deadline: float) -> bool:
        """Whether a client sends its request `i`: not once told to stop or past the
        deadline; after the first, only once `pause` has passed without a stop."""
        if self.stop.is_set() or time.monotonic() > deadline:
            return False
        return not (i and self.pause and self.stop.wait(self.pause))

    def _fresh_loop(self, deadline: float) -> None:
        for i in range(self.max_requests):
            if not self._goes_on(i, deadline):
                return
            port, path, expected = self.targets[i % len(self.targets)]
            conn = self._connect(port)
            try:
                self.fresh.count(_get(conn, path, expected))
            finally:
                conn.close()

    def _kept_loop(self, deadline: float) -> None:
        conns = {port: self._connect(port) for port, _, _ in self.targets}
        try:
            for i in range(self.max_requests):
                if not self._goes_on(i, deadline):
                    return
                port, path, expected = self.targets[i % len(self.targets)]
                problem = _get(conns[port], path, expected)
                self.kept.count(problem)
                if problem is not None:  # start a new connection, as a client library would
                    conns[port].close()
        finally:
            for conn in conns.values():
                conn.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[VipLoad]:
        """Run the clients for the length of the block (at most `max_seconds`), then stop
        them and wait for them; raise if they had stopped before the block ended (a figure
        taken over only part of the change proves nothing)."""
        deadline = time.monotonic() + self.max_seconds
        threads = [threading.Thread(target=self._fresh_loop, args=(deadline,), daemon=True)
                   for _ in range(self.clients)]
        threads.append(threading.Thread(target=self._kept_loop, args=(deadline,), daemon=True))
        for thread in threads:
            thread.start()
        try:
            yield self
            outlasted = all(t.is_alive() for t in threads)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        if not outlasted:
            raise RuntimeError(f"the load ended before the change did ({self.fresh} new "
                               f"connections, {self.kept} kept alive): raise max_seconds")

    def report(self) -> str:
        """The figure: new connections and the kept-alive client."""
        return f"new connections: {self.fresh}; keep-alive: {self.kept}"
