"""What the engine needs from a transport, and the `Result` of one remote command.

Only transports do I/O. The SSH transport (`hadeploy.transport.ssh`) is the one module that
imports fabric/paramiko; `hadeploy.testing.FakeTransport` stands in for it in unit tests,
the way httpx's MockTransport does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hadeploy.errors import CommandFailed


@dataclass(frozen=True)
class Result:
    """The outcome of one command on one host."""

    host: str
    command: str
    exited: int
    stdout: str
    stderr: str
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exited == 0

    def check(self, shown: str | None = None) -> Result:
        """This result, or `CommandFailed` holding it (the command shown as `shown`) when it
        did not exit 0."""
        if not self.ok:
            raise CommandFailed(self, shown)
        return self


class Transport(Protocol):
    """Runs shell scripts on named hosts (as root, through sudo where configured).

    `probe_ahead` says a round trip costs far more than a few more read-only probes in it,
    so the engine may take the probes of a host's later steps along with the current one.
    """

    probe_ahead: bool

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        """Run `script` with `sh` on `host`; raise `TransportError` if SSH fails."""
        ...

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        """Run `script` on `host` and return its raw stdout (for tree copies)."""
        ...

    def keep(self, host: str, script: str) -> None:
        """Start `script` on `host` and leave it running beside the other commands for as
        long as the connection lives (the run lock's heartbeat); its output is not read."""
        ...

    def stats(self) -> Mapping[str, Any]:
        """What the transport counted, for the `run-finished` event (README: round trips and
        connections per host); empty when it counts nothing."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...
