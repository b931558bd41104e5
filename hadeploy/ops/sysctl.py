"""A kernel parameter set now (sysctl -w); persistence is a file operation beside it."""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.facts import Fact
from hadeploy.facts.system import sysctl_value
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.quoting import sh


@dataclass(frozen=True)
class SysctlValue(Operation[str]):
    """`key` has `value` in the running kernel."""

    op_id: str
    key: str
    value: str

    def fact(self, ctx: HostContext) -> Fact[str]:
        return sysctl_value(self.key)

    def done(self, ctx: HostContext, current: str) -> bool:
        # sysctl -n separates the fields of vector values with tabs (ip_local_port_range)
        return current.split() == self.value.split()

    def intent(self, ctx: HostContext, current: str) -> Record:
        return {"kind": "sysctl", "key": self.key, "previous": " ".join(current.split())}

    def apply(self, ctx: HostContext, current: str) -> list[Command]:
        return [Command(sh("sysctl", "-q", "-w", f"{self.key}={self.value}"))]

    def preview(self, ctx: HostContext, current: str) -> str:
        return f"  {self.key}: {current or '?'} -> {self.value}\n"

    def title(self) -> str:
        return f"sysctl {self.key}={self.value}"


def undo_sysctl(ctx: HostContext, record: Record) -> list[Command]:
    """Set the parameter back to the value it had before the run."""
    previous = record.get("previous")
    if not previous:
        return []
    return [Command(sh("sysctl", "-q", "-w", f"{record['key']}={previous}"))]
