"""Facts: what operations and reports need to know about a host, each a read-only shell
command plus a pure parser of its output (pyinfra's facts).

The engine runs the commands (batched, one round trip per host) and operations receive the
parsed values. The modules below hold the facts more than one place reads: files, trees,
packages and services, and the network (VIP holder, listening sockets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True)
class Probe:
    """The raw output of a fact's command; `sources`: stdout of the reads an operation
    needs on other hosts (`Operation.source_probes`), in order."""

    stdout: str
    exited: int = 0
    sources: tuple[str, ...] = ()


def _identity(probe: Probe) -> Probe:
    return probe


def stripped(probe: Probe) -> str:
    """The probe's output without surrounding whitespace (facts that print one word)."""
    return probe.stdout.strip()


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A read-only shell `command` and a pure `parse` of its output. `command` None: the
    value is known without asking the host, and `parse` gets an empty `Probe`."""

    command: str | None
    parse: Callable[[Probe], T]

    @staticmethod
    def known(value: V) -> Fact[V]:
        """A fact decided locally (from the inventory alone): nothing runs on the host."""
        return Fact(None, lambda probe: value)

    @staticmethod
    def raw(command: str) -> Fact[Probe]:
        """A fact whose value is the command's output as it came (test doubles use this)."""
        return Fact(command, _identity)
