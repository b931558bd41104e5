"""Operations: a desired state on one host, as a value with pure methods.

An operation names the fact it needs about the host (`Fact`: a read-only command and a
pure parser of its output), decides from the parsed value whether it is already done, which
commands bring it there, what must be journaled *before* those commands run so a rollback
is always possible (even when the connection drops mid-command), and which commands undo
it. The engine runs the facts' commands and hands each operation its parsed fact;
operations never do I/O themselves (pyinfra's facts/operations split).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hadeploy.facts import Fact, Probe
from hadeploy.hostdirs import BACKUP_ROOT, HADEPLOY_HOME, private_dir
from hadeploy.inventory.model import Node
from hadeploy.platforms import Profile

__all__ = ["BACKUP_ROOT", "HADEPLOY_HOME", "AnyOp", "Command", "Fact", "HostContext",
           "Operation", "Probe", "Record", "SourceRead", "Undo", "private_dir"]

Record = dict[str, Any]
Undo = Callable[["HostContext", Record], list["Command"]]
T = TypeVar("T")


@dataclass(frozen=True)
class SourceRead:
    """A command on another host whose stdout becomes a command's stdin (tree copies)."""

    host: str
    script: str


@dataclass(frozen=True)
class Command:
    """One remote shell command (arguments already quoted) and what feeds its stdin."""

    script: str
    stdin: bytes | None = None
    stdin_from: SourceRead | None = None
    summary: str = ""
    # In a rollback: run after every other undo of the run on this host (e.g. restart a
    # service once the configuration it was restarted for has been restored).
    deferred: bool = False
    # Told to the operator when the command starts, for one that may wait a long time (for
    # another package manager run to finish, say): what it is waiting for.
    notice: str = ""
    # Run on this other host instead (a drained restart sets the server's state on each
    # balancer): the operation's host still owns the step, its journal and its failure.
    on: str | None = None
    # Consecutive commands with the same key run at once, each on its own host (the drain of
    # one server on every balancer): they wait on independent haproxies, not on each other.
    alongside: str = ""

    def shown(self) -> str:
        """How the command appears in plans and logs (stdin is never shown)."""
        return self.summary or self.script


@dataclass(frozen=True)
class HostContext:
    """What an operation may know about the host it works on."""

    node: Node
    profile: Profile
    run_id: str
    step_id: str
    secrets: Mapping[str, str] = field(default_factory=dict)
    changed_steps: frozenset[str] = frozenset()
    detail: bool = False
    # What an earlier, interrupted attempt at this step on this host journaled, by operation
    # id (a resumed run): e.g. that it started a daemon the resume finds running.
    earlier: Mapping[str, Record] = field(default_factory=dict)

    def backup_path(self, path: str) -> str:
        """Where this run keeps the previous version of `path` on the host."""
        return f"{BACKUP_ROOT}/{self.run_id}/{self.step_id}{path}"


class Operation(ABC, Generic[T]):
    """A desired state on one host, deciding from a parsed fact of type `T`; see the module
    docstring."""

    op_id: str
    # Applied while the host's next operations of the step are (a worker daemon's restart,
    # which no balancer sees, beside the API's drained restart); the step waits for it
    # before it re-probes, and its failure is the step's once everything else ended.
    background: bool = False

    @abstractmethod
    def fact(self, ctx: HostContext) -> Fact[T]:
        """The fact about the host that `done`, `apply` and the others decide from."""

    def probe(self, ctx: HostContext) -> str | None:
        """The read-only command to run on the host (None: nothing to ask it)."""
        return self.fact(ctx).command

    def read(self, ctx: HostContext, probe: Probe) -> T:
        """The parsed fact from the command's raw output (ValueError when it makes no sense)."""
        return self.fact(ctx).parse(probe)

    def source_probes(self, ctx: HostContext) -> tuple[SourceRead, ...]:
        """Read-only scripts on *other* hosts whose output the fact also needs (default none).

        A tree copy is done when the destination's manifest equals the source's: the engine
        runs these after the probe and hands their stdout over in `Probe.sources`.
        """
        return ()

    @abstractmethod
    def done(self, ctx: HostContext, seen: T) -> bool:
        """Whether the state is already as desired."""

    @abstractmethod
    def apply(self, ctx: HostContext, seen: T) -> list[Command]:
        """Commands that bring the host to the desired state."""

    def intent(self, ctx: HostContext, seen: T) -> Record:
        """What to journal before applying: enough to undo even a half-done apply."""
        return {}

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        """What to add to the journal after applying (from the commands' stdout)."""
        return {}

    def probe_waits(self) -> bool:
        """Whether the probe polls until something happens (never taken along ahead itself:
        only its `look`, if it has one)."""
        return False

    def look(self, ctx: HostContext) -> str | None:
        """For a probe that waits: one look that does not, taken along with an earlier
        step's probes; used only if it shows the operation done, else the probe runs in its
        step's turn (None: no such look, the step is never probed ahead)."""
        return None

    def interrupts(self, ctx: HostContext, seen: T) -> bool:
        """Whether applying interrupts something the host serves (default: it may). A start
        of a stopped daemon does not; its restart does (`Step.starts_together`)."""
        return True

    def verify(self, ctx: HostContext, seen: T) -> bool:
        """Whether the state is as desired after applying (default: `done`)."""
        return self.done(ctx, seen)

    def preview(self, ctx: HostContext, seen: T) -> str:
        """A human description of the change (a unified diff for files)."""
        return ""

    def title(self) -> str:
        """One line naming the operation."""
        return self.op_id


# What the engine handles: operations whatever fact they decide from.
AnyOp = Operation[Any]
