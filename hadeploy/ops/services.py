"""Services enabled at boot and running, restarted or reloaded when their configuration changed.

Init scripts lie (they exit 0 when the daemon died, and keepalived's restart can be skipped
silently), so every start is followed by polling the pid file, with one retry. A reload is
done only when a new process serves: no retry there, since a failed reload leaves the old
process serving the old configuration, which is what a failed step must leave behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hadeploy import framing
from hadeploy.catalog import Family
from hadeploy.facts import Fact
from hadeploy.facts.system import ServiceState, service_state
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.platforms import Profile, running_probe
from hadeploy.quoting import q

Verb = Literal["start", "restart", "reload", ""]


@dataclass(frozen=True)
class ServiceRunning(Operation[ServiceState]):
    """`service` is enabled at boot and running; restarted when `restart_after` steps changed,
    reloaded when only `reload_after` steps did on a host of a `reload_on` platform family
    (elsewhere those changes restart it too). A reload is done when a new process serves,
    or, for a daemon that re-reads its configuration in place (`reload_in_place`: keepalived
    on SIGHUP), when the same daemon still runs. `restart_only`: a stopped service stays
    stopped and the boot setting is left alone; only a running one is restarted (the lb
    phase moves the original's running APIs to another address, it does not start any)."""

    op_id: str
    service: str
    pidfiles: tuple[str, ...] = ()
    restart_after: frozenset[str] = frozenset()
    wait_seconds: int = 10
    reload_after: frozenset[str] = frozenset()
    reload_on: frozenset[Family] = frozenset()
    reload_in_place: bool = False
    restart_only: bool = False
    # Pid files that only a sysv init writes (catalog `sysv_pid_dir`); `pidfiles` hold
    # under every init.
    sysv_pidfiles: tuple[str, ...] = ()
    # Restarted by a stop, then a start, under a sysv init (catalog `sysv_stop_start`): its
    # init script's own restart never restarts it.
    sysv_stop_start: bool = False
    # Applied while the step's next operations are (see `Operation.background`).
    background: bool = False
    # Restart it whenever it runs, though nothing changed (`hadeploy restart`).
    always: bool = False

    def pid_files(self, ctx: HostContext) -> tuple[str, ...]:
        """The pid files that tell whether the daemon runs on this host's init."""
        return pid_files(ctx, self.pidfiles, self.sysv_pidfiles)

    def fact(self, ctx: HostContext) -> Fact[ServiceState]:
        return service_state(ctx.profile, self.service, self.pid_files(ctx))

    def started_earlier(self, ctx: HostContext, state: ServiceState) -> bool:
        """Whether it runs because an interrupted attempt of this run started it: the steps
        that would restart it came before, so it already runs what they changed."""
        earlier = ctx.earlier.get(self.op_id)
        return state.running and earlier is not None and earlier.get("was_running") is False

    def verb(self, ctx: HostContext, state: ServiceState) -> Verb:
        """What the service needs: started, restarted, reloaded, or nothing (``)."""
        if not state.running:
            return "start"
        if self.started_earlier(ctx, state):
            return ""
        if self.restart_after & ctx.changed_steps:
            return "restart"
        if self.reload_after & ctx.changed_steps:
            return "reload" if ctx.profile.family in self.reload_on else "restart"
        return ""

    def done(self, ctx: HostContext, state: ServiceState) -> bool:
        if self.always and state.running:
            return False
        if self.restart_only:
            return not state.running or not self.verb(ctx, state)
        return state.enabled and not self.verb(ctx, state)

    def intent(self, ctx: HostContext, state: ServiceState) -> Record:
        # restart_only never enables: there is no boot setting for the undo to put back
        record: Record = {"kind": "service", "service": self.service,
                          "pidfiles": list(self.pid_files(ctx)),
                          "was_enabled": state.enabled or self.restart_only,
                          "was_running": state.running}
        if self.verb(ctx, state) == "reload":  # so that a rollback reloads too
            record["verb"] = "reload"
        if self.sysv_stop_start and ctx.profile.init == "sysv":  # and restarts as the run
            record["stop_start"] = True
        return record

    def _pids(self, ctx: HostContext) -> str:
        """Shell: the pids in the service's pid files on one line (a restart changes them)."""
        return pids_in(self.pid_files(ctx))

    def _poll(self, condition: str) -> str:
        """Shell: test `condition` every 0.25 s for `wait_seconds`; exit status: its last test."""
        return poll(condition, self.wait_seconds) + condition

    def _serving(self, ctx: HostContext) -> str:
        """Shell: the pids of the processes that serve, on one line. Under systemd the pid
        file names the master, which stays across a reload: its workers are what change."""
        if ctx.profile.init != "systemd":
            return self._pids(ctx)
        return (f"$(for m in {self._pids(ctx)}; do for s in /proc/[0-9]*/stat; do "
                'read -r p _ _ pp _ < "$s" 2>/dev/null || continue; '
                '[ "$pp" = "$m" ] && echo "$p"; done; done | tr -s \' \\n\' \'  \')')

    def _reload(self, ctx: HostContext) -> Command:
        """Reload, then wait until a new process serves (or, in place, check the daemon still
        runs); else fail, with the service's own message, while the old process goes on
        serving the old configuration."""
        profile = ctx.profile
        check = running_probe(self.service, self.pid_files(ctx), profile.init)
        if self.reload_in_place:
            serving = self._pids(ctx)
            up = f'[ "$({check})" = running ] && [ "{serving}" = "$old" ]'
            then = "check that it still runs"
        else:
            serving = self._serving(ctx)
            up = f'[ "$({check})" = running ] && [ "{serving}" != "$old" ]'
            then = "wait until a new process serves"
        log = ""
        if profile.init == "systemd":  # the master logs a failed reload to the journal
            log = f"journalctl -u {q(self.service)} -n 20 --no-pager >&2 || true; "
        failed = q(f"{self.service} is not running after its reload" if self.reload_in_place
                   else f"{self.service} did not reload; the running one keeps its configuration")
        script = (f'old="{serving}"; '
                  f"if ! {profile.action(self.service, 'reload')} >&2; then "
                  f"{log}echo {failed} >&2; exit 1; fi; "
                  f"if {self._poll(up)}; then exit 0; fi; {log}echo {failed} >&2; exit 1")
        return Command(f"( {script} )",
                       summary=f"{profile.action(self.service, 'reload')} (then {then})")

    def apply(self, ctx: HostContext, state: ServiceState) -> list[Command]:
        profile = ctx.profile
        commands: list[Command] = []
        if not state.enabled and not self.restart_only:
            commands.append(Command(profile.enable(self.service)))
        if self.started_earlier(ctx, state):
            return commands  # it runs what the steps before changed: only enabled
        # Not enabled but running as wanted: restarted, as always, so it runs as enabled.
        verb = self.verb(ctx, state) or "restart"
        if verb == "reload":
            return [*commands, self._reload(ctx)]
        if verb == "restart" and self.sysv_stop_start and profile.init == "sysv":
            commands.append(stop_then_start(profile, self.service, self.pid_files(ctx)))
        else:
            commands.append(restart_and_wait(profile, self.service, self.pid_files(ctx), verb,
                                             self.wait_seconds, state.running))
        return commands

    def interrupts(self, ctx: HostContext, state: ServiceState) -> bool:
        return state.running  # a running daemon is restarted or reloaded; a stopped one started

    def verify(self, ctx: HostContext, state: ServiceState) -> bool:
        return (self.restart_only or state.enabled) and state.running

    def preview(self, ctx: HostContext, state: ServiceState) -> str:
        parts = [] if state.enabled or self.restart_only else ["enable"]
        parts.append(self.verb(ctx, state) or "restart")
        return f"  {self.service}: {' and '.join(parts)}\n"

    def title(self) -> str:
        return f"service {self.service}"


def pid_files(ctx: HostContext, pidfiles: tuple[str, ...],
              sysv_pidfiles: tuple[str, ...]) -> tuple[str, ...]:
    """`pidfiles`, else on a sysv host `sysv_pidfiles` (under systemd the unit is asked)."""
    return pidfiles or (sysv_pidfiles if ctx.profile.init == "sysv" else ())


def poll(condition: str, seconds: int) -> str:
    """Shell: test `condition` every 0.25 s until it holds, for at most `seconds`."""
    return (f"i=0; until {condition} || [ $i -ge {seconds * 4} ]; do "
            "sleep 0.25; i=$((i+1)); done; ")


def pids_in(pidfiles: tuple[str, ...]) -> str:
    """Shell: the pids in `pidfiles` on one line (a restart changes them)."""
    files = " ".join(q(p) for p in pidfiles)
    return f"$(cat {files} 2>/dev/null | tr -s ' \\n' '  ')"


def wait_running(profile: Profile, service: str, pidfiles: tuple[str, ...], seconds: int,
                 replaced: bool = False) -> str:
    """Shell: wait (`seconds` at most) until the service runs; `replaced`: by another daemon
    than the one whose pids are in `$old`. Exit status: whether it does."""
    up = f'[ "$({running_probe(service, pidfiles, profile.init)})" = running ]'
    if replaced:
        up += f' && [ "{pids_in(pidfiles)}" != "$old" ]'
    return poll(up, seconds) + up


def restart_and_wait(profile: Profile, service: str, pidfiles: tuple[str, ...],
                     verb: Literal["start", "restart"], seconds: int, running: bool) -> Command:
    """`verb` the service, then wait until it runs: a restart is done only when a new daemon
    runs (its pids tell it from the old one, which may still be stopping: keepalived's init
    script returns early). A restart that fails (swift's init script does on a stale pid
    file) is followed by a start at once; one that succeeds but starts too early can be
    skipped, leaving nothing running once the old daemon is gone: by the end of the wait it
    is, and one start is retried. Else fail, saying so."""
    replaced = running and bool(pidfiles)
    wait = wait_running(profile, service, pidfiles, seconds, replaced)
    remember = f'old="{pids_in(pidfiles)}"; ' if replaced else ""
    start = profile.action(service, "start")
    # The old daemon still serving after all that: the init script's restart never reached
    # it (Debian 12's swift-proxy stops at a stale pid file of another instance first). End
    # it through its pid file, say so, and start it.
    ended = ""
    if replaced:
        told = q(f"{framing.tag(framing.NOTICE)} {service}'s init script did not restart it: "
                 "ending the process of its pid file, then starting it")
        gone = f'[ "$({running_probe(service, pidfiles, profile.init)})" != running ]'
        ended = (f'if [ -n "$old" ] && [ "{pids_in(pidfiles)}" = "$old" ]; then echo {told}; '
                 f"kill -TERM $old 2>/dev/null || true; {poll(gone, 10)}"
                 f"{gone} || kill -KILL $old 2>/dev/null || true; {start} >&2 || true; fi; ")
    script = (f"{remember}{profile.action(service, verb)} >&2 || {start} >&2 || true; "
              f"if ! ( {wait} ); then {start} >&2 || true; "
              f"if ! ( {wait} ); then {ended}"
              f"( {wait} ) || {{ echo {q(service + ' is not running after ' + verb)} "
              ">&2; exit 1; }; fi; fi")
    return Command(script, summary=f"{profile.action(service, verb)} (then wait until it runs)")


#: Seconds a daemon restarted by a stop and a start (catalog `sysv_stop_start`) is given to
#: stop through its init script before hadeploy ends the process of its pid file: the
#: script's stop returns once it has done what it will (Debian 12's swift-proxy: nothing).
STOP_START_GRACE = 2


def stop_then_start(profile: Profile, service: str, pidfiles: tuple[str, ...]) -> Command:
    """A restart as a stop, waited for (ending the process of its pid file if the init
    script did not), then a start, waited for: for a daemon whose init script's restart
    never restarts it, rather than waiting for that restart to fail first (Debian 12's
    swift-proxy: a minute lost per restart)."""
    stop = stop_and_wait(profile, service, pidfiles, must_stop=True, grace=STOP_START_GRACE)
    script = f"{stop}; {start_and_wait(profile, service, pidfiles)}"
    return Command(f"( {script} )",
                   summary=f"{profile.action(service, 'stop')}, then "
                           f"{profile.action(service, 'start')} (its init script's restart "
                           "does not restart it; then wait until it runs)")


def installed_test(profile: Profile, service: str) -> str:
    """Shell test: `service` is still installed (a later rollback may have purged it)."""
    return (f"systemctl cat {q(service)} >/dev/null 2>&1" if profile.init == "systemd"
            else f"[ -x /etc/init.d/{q(service)} ]")


def stop_and_wait(profile: Profile, service: str, pidfiles: tuple[str, ...],
                  must_stop: bool = False, grace: int = 10) -> str:
    """Shell: stop `service` and wait (`grace` s at most) until it is gone. An init script
    that did not stop it (Debian 12's swift-proxy gives up at a stale pid file of its own)
    is helped, where its pid files are known: TERM to their processes, 10 s, then KILL, and
    the operator is told. `must_stop`: fail, saying so, if it still runs then."""
    check = running_probe(service, pidfiles, profile.init)
    running = f'[ "$({check})" = running ]'
    script = (f"{profile.action(service, 'stop')} >&2 || true; "
              + poll(f"! {running}", grace))
    if pidfiles:
        told = q(f"{framing.tag(framing.NOTICE)} {service} still ran {grace} s after its "
                 "init script's stop: ending the process of its pid file")
        script += (f"if {running}; then echo {told}; kill -TERM {pids_in(pidfiles)} "
                   f"2>/dev/null || true; {poll(f'! {running}', 10)}"
                   f"if {running}; then kill -KILL {pids_in(pidfiles)} 2>/dev/null || true; "
                   "sleep 0.5; fi; fi; ")
    if must_stop:
        script += (f"! {running} || "
                   f"{{ echo {q(service + ' still runs 10 s after its stop')} >&2; exit 1; }}")
    else:
        script += "true"
    return script


def start_and_wait(profile: Profile, service: str, pidfiles: tuple[str, ...]) -> str:
    """Shell: start `service` and wait (30 s at most) until it runs, else fail saying so."""
    check = running_probe(service, pidfiles, profile.init)
    failed = q(f"{service} is not running 30 s after its start")
    return (f"{profile.action(service, 'start')} >&2 || true; i=0; "
            f'until [ "$({check})" = running ] || [ $i -ge 120 ]; do i=$((i+1)); sleep 0.25; '
            f'done; [ "$({check})" = running ] || {{ echo {failed} >&2; exit 1; }}')


def undo_service(ctx: HostContext, record: Record) -> list[Command]:
    """Stop a service this run started and disable one this run enabled."""
    profile = ctx.profile
    service = str(record["service"])
    commands: list[Command] = []
    if not record.get("was_running"):
        grace = STOP_START_GRACE if record.get("stop_start") else 10
        commands.append(Command(
            stop_and_wait(profile, service, tuple(record.get("pidfiles", ())), grace=grace),
            summary=profile.action(service, "stop")))
    if record.get("was_running"):
        # The run restarted (or reloaded) it for a new configuration; once that is restored,
        # do so again so it runs the old one (skipped if the service no longer exists).
        # A restart is followed like the run's own: started if it did not, then waited for.
        pidfiles = tuple(str(p) for p in record.get("pidfiles", ()))
        if record.get("verb") == "reload":
            script, action = f"{profile.action(service, 'reload')} >&2", "reload"
        elif record.get("stop_start"):
            script, action = stop_then_start(profile, service, pidfiles).script, "restart"
        else:
            restart = restart_and_wait(profile, service, pidfiles, "restart", 30, True)
            script = f"( {restart.script} )"
            action = "restart"
        commands.append(Command(
            f"if {installed_test(profile, service)}; then {script}; fi",
            summary=f"{profile.action(service, action)} (after the files are restored)",
            deferred=True))
    if not record.get("was_enabled"):
        commands.append(Command(profile.disable(service) + " >&2 || true",
                                summary=profile.disable(service)))
    return commands
