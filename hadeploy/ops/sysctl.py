"""A kernel parameter set now (sysctl -w); persistence is a file operation beside it."""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.ops.base import Command, HostContext, Operation, Probe, Record, undoer
from hadeploy.quoting import sh


@dataclass(frozen=True)
class SysctlValue(Operation):
    """`key` has `value` in the running kernel."""

    op_id: str
    key: str
    value: str

    def probe(self, ctx: HostContext) -> str:
        return sh("sysctl", "-n", self.key)

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        # sysctl -n separates the fields of vector values with tabs (ip_local_port_range)
        return seen.stdout.split() == self.value.split()

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {"kind": "sysctl", "key": self.key, "previous": " ".join(seen.stdout.split())}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(sh("sysctl", "-q", "-w", f"{self.key}={self.value}"))]

    def preview(self, ctx: HostContext, seen: Probe) -> str:
        return f"  {self.key}: {seen.stdout.strip() or '?'} -> {self.value}\n"

    def title(self) -> str:
        return f"sysctl {self.key}={self.value}"


@undoer("sysctl")
def undo_sysctl(ctx: HostContext, record: Record) -> list[Command]:
    """Set the parameter back to the value it had before the run."""
    previous = record.get("previous")
    if not previous:
        return []
    return [Command(sh("sysctl", "-q", "-w", f"{record['key']}={previous}"))]
