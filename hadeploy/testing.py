"""Public test doubles (like invoke.MockContext / fabric.testing): a scripted transport.

`FakeTransport` answers commands from handlers instead of SSH, so the engine, runbooks and
tasks can be tested without sockets. Hosts are simulated as dicts of files and sets of
packages by `FakeHost`, which understands the small shell vocabulary the operations emit
only through registered handlers; anything unknown fails loudly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from hadeploy.errors import TransportError
from hadeploy.transport.base import Result

Handler = Callable[[str, str, bytes | None], tuple[int, str, str] | None]


@dataclass
class FakeTransport:
    """Routes each command to the first handler that answers; records every call."""

    handlers: list[Handler] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, handler: Handler) -> None:
        """Add a handler: (host, script, stdin) -> (exit, stdout, stderr) or None to pass."""
        self.handlers.append(handler)

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        with self._lock:
            self.calls.append((host, script))
        if host in self.down:
            raise TransportError(host, "connection lost (simulated)")
        for handler in self.handlers:
            answer = handler(host, script, stdin)
            if answer is not None:
                code, out, err = answer
                return Result(host, script, code, out, err)
        raise AssertionError(f"FakeTransport: no handler for {host}: {script[:200]}")

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        return self.run(host, script, timeout=timeout).check().stdout.encode()

    def close(self) -> None:
        self.closed = True

    def commands_on(self, host: str) -> list[str]:
        """Every script run on `host`, in order."""
        return [s for h, s in self.calls if h == host]
