"""A controller leaving the control plane (`retire = true`): each of its services stopped and
disabled at boot, without cutting a request.

Before a daemon stops, its server is drained on every balancer whose haproxy still has it
(deploy-controllers run before deploy-lb; once deploy-lb reloaded haproxy without it there
is nothing to drain), and the controller waits, bounded, until no balancer holds a TCP
connection to the service's ports any more: an old haproxy process finishing its sessions
after a reload is invisible to the stats socket, but not to `ss` on the controller. The
undo starts and enables what was running and enabled, and makes the server ready again
where haproxy still has it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hadeploy.facts import Fact
from hadeploy.facts.system import ServiceState, service_state
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.ops.drain import Balancers, drain_script, ready_script
from hadeploy.ops.services import installed_test, pid_files, start_and_wait, stop_and_wait
from hadeploy.quoting import q


def connections_end_script(ports: tuple[int, ...], sources: tuple[str, ...],
                           seconds: int) -> str:
    """Shell on the controller: wait (bounded) until no TCP connection from one of the
    balancers' `sources` is established on one of `ports`; past the bound, say how many
    are left and go on."""
    ports_filter = " or ".join(f"sport = :{p}" for p in ports)
    peers = q(" " + " ".join(sources) + " ")
    count = (f"n=$(ss -Htn state established {q('( ' + ports_filter + ' )')} | "
             f"awk -v s={peers} "
             + q('{ p = $4; sub(/:[0-9]+$/, "", p); if (index(s, " " p " ")) n++ } '
                 "END { print n + 0 }") + ")")
    left = q(f"connections from the balancers to ports {', '.join(map(str, ports))} still "
             f"open after {seconds} s; stopping anyway: ")
    return (f"i=0; until {{ {count}; [ \"$n\" = 0 ]; }} || [ $i -ge {seconds * 4} ]; do "
            "sleep 0.25; i=$((i+1)); done; "
            f'[ "$n" = 0 ] || echo {left}"$n" >&2')


@dataclass(frozen=True)
class ServiceRetired(Operation[ServiceState]):
    """`service` stopped and disabled at boot on a retired controller, drained first:
    `balancers` (None: nothing balances it, or no stats socket) and the connections from
    `sources` to `ports` waited out for at most `drain_seconds`."""

    op_id: str
    service: str
    pidfiles: tuple[str, ...]
    balancers: Balancers | None
    ports: tuple[int, ...]
    sources: tuple[str, ...]
    drain_seconds: int
    sysv_pidfiles: tuple[str, ...] = ()

    def _pid_files(self, ctx: HostContext) -> tuple[str, ...]:
        return pid_files(ctx, self.pidfiles, self.sysv_pidfiles)

    def fact(self, ctx: HostContext) -> Fact[ServiceState]:
        return service_state(ctx.profile, self.service, self._pid_files(ctx))

    def done(self, ctx: HostContext, state: ServiceState) -> bool:
        return not state.running and not state.enabled

    def intent(self, ctx: HostContext, state: ServiceState) -> Record:
        return {"kind": "retired-service", "service": self.service,
                "pidfiles": list(self._pid_files(ctx)),
                "was_enabled": state.enabled,
                "was_running": state.running, "server": ctx.node.name,
                "balancers": asdict(self.balancers) if self.balancers else None}

    def _stop(self, ctx: HostContext) -> Command:
        return Command(stop_and_wait(ctx.profile, self.service, self._pid_files(ctx),
                                     must_stop=True),
                       summary=f"{ctx.profile.action(self.service, 'stop')} (then wait until "
                               "it is gone)")

    def apply(self, ctx: HostContext, state: ServiceState) -> list[Command]:
        commands: list[Command] = []
        node = ctx.node.name
        if state.running:
            lbs = self.balancers
            if lbs is not None:
                commands += [Command(
                    drain_script(lbs, node, if_listed=True), on=lb, alongside="drain",
                    summary=f"{lb}: set {node} to drain in {', '.join(lbs.backends)} where "
                            "haproxy still has it, wait until its sessions reach 0",
                    notice=f"{lb}: draining {node}: waits at most {lbs.drain_seconds} s for "
                           "its sessions to end") for lb in lbs.hosts]
            if self.ports and self.sources:
                commands.append(Command(
                    connections_end_script(self.ports, self.sources, self.drain_seconds),
                    summary=f"wait until no balancer has a connection to port(s) "
                            f"{', '.join(map(str, self.ports))} (at most "
                            f"{self.drain_seconds} s)"))
            commands.append(self._stop(ctx))
        if state.enabled:
            commands.append(Command(ctx.profile.disable(self.service) + " >&2",
                                    summary=ctx.profile.disable(self.service)))
        return commands

    def verify(self, ctx: HostContext, state: ServiceState) -> bool:
        return self.done(ctx, state)

    def preview(self, ctx: HostContext, state: ServiceState) -> str:
        parts = []
        if state.running:
            where = (f"drained on {', '.join(self.balancers.hosts)} first, "
                     if self.balancers else "")
            parts.append(f"stop ({where}once no balancer has a connection to it)")
        if state.enabled:
            parts.append("disable at boot")
        return f"  {self.service}: {' and '.join(parts)}\n"

    def title(self) -> str:
        return f"service {self.service} retired"


def undo_retired(ctx: HostContext, record: Record) -> list[Command]:
    """Enable and start again what the retirement disabled and stopped (unless the service
    is gone: a later run's rollback removed its packages, or the host was rebuilt); where
    haproxy still has the server, make it ready once haproxy sees it UP."""
    profile = ctx.profile
    service = str(record["service"])
    exists = installed_test(profile, service)
    commands: list[Command] = []
    if record.get("was_enabled"):
        commands.append(Command(f"if {exists}; then {profile.enable(service)} >&2; fi",
                                summary=f"{profile.enable(service)} (if it is still installed)"))
    if record.get("was_running"):
        commands.append(Command(
            f"{exists} || exit 0; "
            + start_and_wait(profile, service, tuple(record.get("pidfiles", ()))),
            summary=f"{profile.action(service, 'start')} (if it is still installed; then wait "
                    "until it runs)"))
        data = record.get("balancers")
        if data:
            lbs = Balancers.from_record(data)
            server = str(record["server"])
            commands += [Command(ready_script(lbs, server, if_listed=True), on=lb,
                                 alongside="ready",
                                 summary=f"{lb}: once haproxy sees {server} UP, set it ready "
                                         "(where haproxy still has it)")
                         for lb in lbs.hosts]
    return commands
