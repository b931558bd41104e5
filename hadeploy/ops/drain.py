"""Drained restarts: an API's server leaves every haproxy's rotation before its daemon
restarts, and comes back only once the API answers and every haproxy sees it UP.

On each balancer hadeploy talks to haproxy's admin stats socket (owner-only, so as root)
with socat: once another server of each backend is UP and ready (bounded: a lone server is
drained anyway), `set server BACKEND/SERVER state drain` (no new requests; those in flight
finish), then `show stat` until the server's current sessions reach 0 (bounded: after
`drain_seconds` the restart goes ahead and cuts what is left, as the notice says
beforehand). The daemon restarts; the controller checks that its APIs answer on its own
address as haproxy's health check expects; each balancer waits (bounded) until `show servers
state` says the server is running, and sets it `ready`. These commands run on the balancers
(`Command.on`) but belong to the controller's operation, so the journal, the failure and its
undo are the controller's. A rollback's restart is drained the same way (`undo_drained`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from hadeploy.facts import Fact
from hadeploy.facts.system import ServiceState
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.ops.services import ServiceRunning, poll, undo_service
from hadeploy.quoting import q

NO_SOCAT = ("socat is not installed on this balancer; hadeploy talks to haproxy's stats "
            "socket with it: run deploy-lb again (it installs socat)")


@dataclass(frozen=True)
class Balancers:
    """Where and how a controller's server is drained: the balancers, haproxy's admin
    socket on them, the service's backends, and the bounds of the two waits (s)."""

    hosts: tuple[str, ...]
    socket: str
    backends: tuple[str, ...]
    drain_seconds: int
    up_seconds: int

    @classmethod
    def from_record(cls, data: dict[str, object]) -> Balancers:
        """The balancers a journal record kept (`dataclasses.asdict` of one)."""
        hosts, backends = data["hosts"], data["backends"]
        assert isinstance(hosts, (list, tuple)) and isinstance(backends, (list, tuple))
        return cls(tuple(hosts), str(data["socket"]), tuple(backends),
                   int(str(data["drain_seconds"])), int(str(data["up_seconds"])))


def _cli(socket: str) -> str:
    """Shell: refuse without socat, then `hap CMD` sends CMD to haproxy. A balancer whose
    haproxy does not answer on its stats socket (stopped, killed, socket missing) carries no
    traffic: there is nothing to drain or make ready there, so the script says so and ends."""
    down = q(f"haproxy is not running on this balancer (its stats socket {socket} does not "
             "answer): it sends no traffic, nothing to drain or make ready here")
    return (f"command -v socat >/dev/null || {{ echo {q(NO_SOCAT)} >&2; exit 1; }}; "
            f"hap() {{ printf '%s\\n' \"$1\" | socat -t 5 - {q('UNIX-CONNECT:' + socket)}; }}; "
            f"{{ [ -S {q(socket)} ] && hap 'show info' >/dev/null 2>&1; }} || "
            f"{{ echo {down} >&2; exit 0; }}; ")


def _set_state(lbs: Balancers, server: str, state: str) -> str:
    """Shell: set `server` to `state` in every backend; fail with haproxy's answer if it
    refuses (an unknown backend or server prints a message, success prints nothing)."""
    commands = "; ".join(f"set server {b}/{server} state {state}" for b in lbs.backends)
    refused = q(f"haproxy refused `{commands}`: ")
    return (f"out=$(hap {q(commands)}); "
            "if [ -n \"$(printf '%s' \"$out\" | tr -d '[:space:]')\" ]; then "
            f"echo {refused}\"$out\" >&2; exit 1; fi; ")


def _rows(lbs: Balancers, name_field: int, backend_field: int) -> str:
    """awk condition: a row of `server` in one of the service's backends."""
    backends = " || ".join(f'${backend_field} == "{b}"' for b in lbs.backends)
    return f"(${name_field} == srv) && ({backends})"


def _others_up(lbs: Balancers, server: str) -> str:
    """Shell: wait (bounded) until every backend has another server running and ready to
    take the traffic; past the bound, say so and go on (a lone server cannot be spared)."""
    backends = " || ".join(f'$2 == "{b}"' for b in lbs.backends)
    others = q(f"$4 != srv && ({backends}) && $6 == 2 && $7 == 0 {{ up[$2] = 1 }} "
               "END { n = 0; for (b in up) n++; print n }")
    found = f"o=$(hap 'show servers state' | awk -v srv={q(server)} {others})"
    alone = q(f"no other server is UP in every one of {', '.join(lbs.backends)} after "
              f"{lbs.up_seconds} s; draining {server} anyway")
    return (poll(f'{{ {found}; [ "$o" = {len(lbs.backends)} ]; }}', lbs.up_seconds)
            + f'[ "$o" = {len(lbs.backends)} ] || echo {alone} >&2; ')


def _listed(lbs: Balancers, server: str) -> str:
    """Shell: end here (exit 0, saying so) unless haproxy has `server` in one of the
    backends: a retired controller's server is gone once deploy-lb reloaded without it."""
    rows = q(f"{_rows(lbs, 4, 2)} {{ n++ }} END {{ print n + 0 }}")
    gone = q(f"{server} is in none of {', '.join(lbs.backends)} on this balancer (deploy-lb "
             "took it out): nothing to do here")
    return (f"l=$(hap 'show servers state' | awk -v srv={q(server)} {rows}); "
            f'[ "$l" != 0 ] || {{ echo {gone} >&2; exit 0; }}; ')


def drain_script(lbs: Balancers, server: str, if_listed: bool = False) -> str:
    """Shell on a balancer: once another server can take the traffic (bounded), drain
    `server`, then wait until its sessions reach 0 (bounded). `if_listed`: a balancer whose
    haproxy no longer has the server has nothing to drain."""
    listed = _listed(lbs, server) if if_listed else ""
    sessions = q(f"BEGIN {{ FS = \",\" }} {_rows(lbs, 2, 1)} {{ n += $5 }} END {{ print n + 0 }}")
    count = f"n=$(hap 'show stat' | awk -v srv={q(server)} {sessions})"
    left = q(f"{server} still has sessions after {lbs.drain_seconds} s; going on anyway: ")
    return (_cli(lbs.socket) + listed + _others_up(lbs, server)
            + _set_state(lbs, server, "drain")
            + poll(f'{{ {count}; [ "$n" = 0 ]; }}', lbs.drain_seconds)
            + f'[ "$n" = 0 ] || echo {left}"$n" >&2')


def ready_script(lbs: Balancers, server: str, if_listed: bool = False) -> str:
    """Shell on a balancer: wait until haproxy sees `server` running in every backend
    (bounded), then set it ready; past the bound, set it ready anyway (haproxy sends no
    traffic to a server its checks find down) and fail, saying so. `if_listed`: nothing to
    do where haproxy does not have the server."""
    seen = q(f"{_rows(lbs, 4, 2)} {{ seen++; if ($6 == 2) up++ }} "
             "END { print up + 0 \" \" seen + 0 }")
    want = f"{len(lbs.backends)} {len(lbs.backends)}"
    found = f"r=$(hap 'show servers state' | awk -v srv={q(server)} {seen})"
    up = f'{{ {found}; [ "$r" = {q(want)} ]; }}'
    late = q(f"haproxy does not see {server} UP in {', '.join(lbs.backends)} after "
             f"{lbs.up_seconds} s (running/found: ")
    return (_cli(lbs.socket) + (_listed(lbs, server) if if_listed else "")
            + poll(up, lbs.up_seconds) + _set_state(lbs, server, "ready")
            + f'[ "$r" = {q(want)} ] || {{ echo {late}"$r); it is set ready: haproxy sends it '
            'traffic once its checks pass" >&2; exit 1; }')


def drained(lbs: Balancers, server: str, restart: list[Command], answers: str) -> list[Command]:
    """`restart` with `server` drained on every balancer first and made ready after, once
    `answers` (shell on the controller, exit 0 when its APIs answer) succeeds."""
    backends = ", ".join(lbs.backends)
    drain = [Command(drain_script(lbs, server), on=lb, alongside="drain",
                     summary=f"{lb}: set {server} to drain in {backends} (stats socket), "
                             f"wait until its sessions reach 0 (at most {lbs.drain_seconds} s)",
                     notice=f"{lb}: draining {server} in {backends}: waits at most "
                            f"{lbs.drain_seconds} s for its sessions to end, then restarts "
                            "anyway")
             for lb in lbs.hosts]
    answer = Command(answers, summary=f"wait until {server}'s APIs answer on its own address")
    ready = [Command(ready_script(lbs, server), on=lb, alongside="ready",
                     summary=f"{lb}: wait until haproxy sees {server} UP in {backends} "
                             f"(at most {lbs.up_seconds} s), then set it ready")
             for lb in lbs.hosts]
    return [*drain, *restart, answer, *ready]


@dataclass(frozen=True)
class DrainedRestart(Operation[ServiceState]):
    """`service` as `ServiceRunning` says, with every restart of a running daemon drained on
    the balancers (`drained`); a start (nothing to drain) and a reload are left as they are.
    `always`: restart a running daemon even though nothing changed (`hadeploy restart`)."""

    op_id: str
    service: ServiceRunning
    balancers: Balancers
    answers: str
    always: bool = False

    def fact(self, ctx: HostContext) -> Fact[ServiceState]:
        return self.service.fact(ctx)

    def _restarts(self, ctx: HostContext, state: ServiceState) -> bool:
        verb = self.service.verb(ctx, state)
        return state.running and (verb == "restart" or (self.always and not verb))

    def done(self, ctx: HostContext, state: ServiceState) -> bool:
        if self.always and state.running:
            return False
        if self.service.started_earlier(ctx, state):
            return False  # the attempt that started it may not have made it ready
        return self.service.done(ctx, state)

    def intent(self, ctx: HostContext, state: ServiceState) -> Record:
        record = self.service.intent(ctx, state)
        # A start is recorded with the balancers too: its undo (a stop) is drained.
        if self._restarts(ctx, state) or not state.running:
            record.update(kind="drained-service", server=ctx.node.name, answers=self.answers,
                          balancers=asdict(self.balancers))
        return record

    def _made_ready(self, ctx: HostContext) -> list[Command]:
        """A server a rollback drained before stopping it would stay drained (and get no
        traffic) until haproxy reloads: where haproxy has it, it is made ready again; haproxy
        sends it traffic once its checks pass."""
        node = ctx.node.name
        return [Command(_cli(self.balancers.socket) + _listed(self.balancers, node)
                        + _set_state(self.balancers, node, "ready"), on=lb, alongside="ready",
                        summary=f"{lb}: set {node} ready in "
                                f"{', '.join(self.balancers.backends)} where haproxy has it")
                for lb in self.balancers.hosts]

    def apply(self, ctx: HostContext, state: ServiceState) -> list[Command]:
        if self.service.started_earlier(ctx, state):
            # Started by the interrupted attempt, after everything that would restart it: a
            # restart would only interrupt a daemon that may still be starting. What that
            # attempt may not have done is what follows the start.
            enable = [] if state.enabled else [Command(ctx.profile.enable(self.service.service))]
            return [*enable, *self._made_ready(ctx)]
        commands = self.service.apply(ctx, state)
        if not state.running:
            return [*commands, *self._made_ready(ctx)]
        if not self._restarts(ctx, state):
            return commands
        return drained(self.balancers, ctx.node.name, commands, self.answers)

    def interrupts(self, ctx: HostContext, state: ServiceState) -> bool:
        return self.service.interrupts(ctx, state)

    def verify(self, ctx: HostContext, state: ServiceState) -> bool:
        return self.service.verify(ctx, state)

    def preview(self, ctx: HostContext, state: ServiceState) -> str:
        if not self._restarts(ctx, state):
            return self.service.preview(ctx, state)
        return (f"  {self.service.service}: restart, drained: {ctx.node.name} set to drain on "
                f"{', '.join(self.balancers.hosts)} first, ready again once every haproxy "
                "sees it UP\n")

    def title(self) -> str:
        return self.service.title()


def undo_drained(ctx: HostContext, record: Record) -> list[Command]:
    """As `undo_service`, drained: a restart (after the files are restored) as in a run, and
    the stop of a daemon the run started only once its server is drained on every balancer
    that still has it."""
    lbs = Balancers.from_record(record["balancers"])
    server = str(record["server"])
    commands = undo_service(ctx, record)
    if not record.get("was_running"):
        drains = [Command(drain_script(lbs, server, if_listed=True), on=lb, alongside="drain",
                          summary=f"{lb}: set {server} to drain in {', '.join(lbs.backends)} "
                                  "where haproxy has it, wait until its sessions reach 0",
                          notice=f"{lb}: draining {server} before its stop: waits at most "
                                 f"{lbs.drain_seconds} s for its sessions to end")
                  for lb in lbs.hosts]
        return [*drains, *commands]
    deferred = [c for c in commands if c.deferred]
    if not deferred:
        return commands
    steps = drained(lbs, server, deferred, str(record["answers"]))
    return [*(c for c in commands if not c.deferred),
            *(replace(c, deferred=True) for c in steps)]
