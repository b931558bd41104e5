"""Read-only requirements (preflight and final verification): read a fact, judge, never
change anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hadeploy.facts import Fact
from hadeploy.ops.base import Command, HostContext, Operation
from hadeploy.quoting import q

T = TypeVar("T")
# The problem with what the fact shows, or None when the requirement is met.
Judge = Callable[[HostContext, T], str | None]


@dataclass(frozen=True)
class Requirement(Operation[T]):
    """A condition hadeploy verifies but must not fix: `judge` rules on the `evidence` (a
    fact about the host) and returns the problem or None. Evidence known from the inventory
    alone (`Fact.known`) asks the host nothing: such a requirement fails without a round
    trip."""

    op_id: str
    evidence: Fact[T]
    judge: Judge[T]
    description: str = ""
    waits: bool = False
    # With `waits`: the same evidence taken without waiting (see `Operation.look`).
    glance: Fact[T] | None = None

    def fact(self, ctx: HostContext) -> Fact[T]:
        return self.evidence

    def probe_waits(self) -> bool:
        return self.waits

    def look(self, ctx: HostContext) -> str | None:
        return self.glance.command if self.glance is not None else None

    def done(self, ctx: HostContext, seen: T) -> bool:
        return self.judge(ctx, seen) is None

    def apply(self, ctx: HostContext, seen: T) -> list[Command]:
        problem = self.judge(ctx, seen) or "requirement not met"
        return [Command(f"echo {q(problem)} >&2; exit 1", summary=f"fail: {problem}")]

    def preview(self, ctx: HostContext, seen: T) -> str:
        return f"  NOT MET: {self.judge(ctx, seen)}\n"

    def title(self) -> str:
        return self.description or self.op_id
