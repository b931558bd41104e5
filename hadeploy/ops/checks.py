"""Read-only requirements (preflight and final verification): probe, judge, never change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hadeploy.ops.base import Command, HostContext, Operation, Probe
from hadeploy.quoting import q

Judge = Callable[[HostContext, Probe], str | None]


@dataclass(frozen=True)
class Requirement(Operation):
    """A condition hadeploy verifies but must not fix; `judge` returns the problem or None."""

    op_id: str
    script: str
    judge: Judge
    description: str = ""
    waits: bool = False

    def probe_waits(self) -> bool:
        return self.waits

    def probe(self, ctx: HostContext) -> str:
        return self.script

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return self.judge(ctx, seen) is None

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        problem = self.judge(ctx, seen) or "requirement not met"
        return [Command(f"echo {q(problem)} >&2; exit 1", summary=f"fail: {problem}")]

    def preview(self, ctx: HostContext, seen: Probe) -> str:
        return f"  NOT MET: {self.judge(ctx, seen)}\n"

    def title(self) -> str:
        return self.description or self.op_id
