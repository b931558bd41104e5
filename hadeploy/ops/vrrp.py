"""keepalived running, as `ServiceRunning`, plus what its reload does to the VIP, said in the
plan before it happens.

keepalived re-reads its configuration in place, so the VRRP election only changes when the
new priorities say so: the holder reloads last, and if another node now has the highest
priority (and preemption is on) the VIP moves once, to that node. The operator reads which
before confirming.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.facts import Fact, Probe
from hadeploy.facts.network import vip_held
from hadeploy.facts.system import ServiceState
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.ops.services import ServiceRunning


@dataclass(frozen=True)
class VrrpSeen:
    """keepalived's service state and whether this host holds the VIP now."""

    service: ServiceState
    holds_vip: bool


@dataclass(frozen=True)
class KeepalivedRunning(Operation[VrrpSeen]):
    """`service` (keepalived) runs as `ServiceRunning` says; on the VIP's holder the preview
    also says where the VIP ends: `elected` is the node the new priorities elect, or "" when
    preemption is off (the VIP then stays where it is)."""

    op_id: str
    service: ServiceRunning
    vip: str
    elected: str

    def fact(self, ctx: HostContext) -> Fact[VrrpSeen]:
        state, held = self.service.fact(ctx), vip_held(self.vip)

        def parse(probe: Probe) -> VrrpSeen:
            # Both probes print words on lines of their own; each parser reads only its own.
            lines = probe.stdout.splitlines()
            return VrrpSeen(state.parse(Probe("\n".join(lines[:-1]), probe.exited)),
                            held.parse(Probe(lines[-1] if lines else "", probe.exited)))

        return Fact(f"{state.command}; {held.command}", parse)

    def done(self, ctx: HostContext, seen: VrrpSeen) -> bool:
        return self.service.done(ctx, seen.service)

    def intent(self, ctx: HostContext, seen: VrrpSeen) -> Record:
        return self.service.intent(ctx, seen.service)

    def apply(self, ctx: HostContext, seen: VrrpSeen) -> list[Command]:
        return self.service.apply(ctx, seen.service)

    def verify(self, ctx: HostContext, seen: VrrpSeen) -> bool:
        return self.service.verify(ctx, seen.service)

    def preview(self, ctx: HostContext, seen: VrrpSeen) -> str:
        text = self.service.preview(ctx, seen.service)
        if not seen.holds_vip:
            return text
        if not self.elected:
            return text + f"  the VIP {self.vip} stays here (nopreempt); this host goes last\n"
        if self.elected == ctx.node.name:
            return text + f"  the VIP {self.vip} stays here; this host goes last\n"
        return text + (f"  the VIP {self.vip} moves once, from here to {self.elected}: the "
                       "highest priority now\n")

    def title(self) -> str:
        return self.service.title()
