"""Services enabled at boot and running, restarted when their configuration changed.

Init scripts lie (they exit 0 when the daemon died, and keepalived's restart can be skipped
silently), so every start is followed by polling the pid file, with one retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.facts import Fact
from hadeploy.facts.system import ServiceState, service_state
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.platforms import running_probe
from hadeploy.quoting import q


@dataclass(frozen=True)
class ServiceRunning(Operation[ServiceState]):
    """`service` is enabled at boot and running; restarted when `restart_after` steps changed."""

    op_id: str
    service: str
    pidfiles: tuple[str, ...] = ()
    restart_after: frozenset[str] = frozenset()
    wait_seconds: int = 10

    def fact(self, ctx: HostContext) -> Fact[ServiceState]:
        return service_state(ctx.profile, self.service, self.pidfiles)

    def _needs_restart(self, ctx: HostContext) -> bool:
        return bool(self.restart_after & ctx.changed_steps)

    def done(self, ctx: HostContext, state: ServiceState) -> bool:
        return state.enabled and state.running and not self._needs_restart(ctx)

    def intent(self, ctx: HostContext, state: ServiceState) -> Record:
        return {"kind": "service", "service": self.service, "pidfiles": list(self.pidfiles),
                "was_enabled": state.enabled, "was_running": state.running}

    def _pids(self) -> str:
        """Shell: the pids in the service's pid files on one line (a restart changes them)."""
        files = " ".join(q(p) for p in self.pidfiles)
        return f"$(cat {files} 2>/dev/null | tr -s ' \\n' '  ')"

    def _wait_running(self, ctx: HostContext, replaced: bool = False) -> str:
        """Shell: wait until the service runs; `replaced`: by another daemon than the one
        whose pids are in `$old` (a restart is done only when the new daemon is up)."""
        check = running_probe(self.service, self.pidfiles, ctx.profile.init)
        up = f'[ "$({check})" = running ]'
        if replaced:
            up += f' && [ "{self._pids()}" != "$old" ]'
        tries = self.wait_seconds * 4
        return (f"i=0; while [ $i -lt {tries} ]; do "
                f"{up} && break; i=$((i+1)); sleep 0.25; done; {up}")

    def apply(self, ctx: HostContext, state: ServiceState) -> list[Command]:
        profile = ctx.profile
        commands: list[Command] = []
        if not state.enabled:
            commands.append(Command(profile.enable(self.service)))
        verb = "restart" if state.running else "start"
        # A restart returns while the old daemon may still be stopping (keepalived's init
        # script does): its pids tell the old daemon from the new one.
        replaced = state.running and bool(self.pidfiles)
        wait = self._wait_running(ctx, replaced)
        remember = f'old="{self._pids()}"; ' if replaced else ""
        # One retry: such a restart can start too early and be skipped, leaving nothing
        # running once the old daemon is gone; by the end of the wait it is.
        script = (f"{remember}{profile.action(self.service, verb)} >&2 || true; "
                  f"if ! ( {wait} ); then {profile.action(self.service, 'start')} >&2 || true; "
                  f"( {wait} ) || {{ echo {q(self.service + ' is not running after ' + verb)} "
                  ">&2; exit 1; }; fi")
        commands.append(Command(script, summary=f"{profile.action(self.service, verb)} "
                                "(then wait until it runs)"))
        return commands

    def verify(self, ctx: HostContext, state: ServiceState) -> bool:
        return state.enabled and state.running

    def preview(self, ctx: HostContext, state: ServiceState) -> str:
        parts = [] if state.enabled else ["enable"]
        parts.append("restart" if state.running else "start")
        return f"  {self.service}: {' and '.join(parts)}\n"

    def title(self) -> str:
        return f"service {self.service}"


def undo_service(ctx: HostContext, record: Record) -> list[Command]:
    """Stop a service this run started and disable one this run enabled."""
    profile = ctx.profile
    service = record["service"]
    commands: list[Command] = []
    if not record.get("was_running"):
        check = running_probe(service, tuple(record.get("pidfiles", ())), profile.init)
        commands.append(Command(
            f"{profile.action(service, 'stop')} >&2 || true; i=0; "
            f"while [ \"$({check})\" = running ] && [ $i -lt 40 ]; do "
            "i=$((i+1)); sleep 0.25; done",
            summary=profile.action(service, "stop")))
    if record.get("was_running"):
        # The run restarted it for a new configuration; once that is restored, restart it
        # again so it runs the old one (skipped if the service no longer exists).
        exists = (f"systemctl cat {q(service)} >/dev/null 2>&1" if profile.init == "systemd"
                  else f"[ -x /etc/init.d/{q(service)} ]")
        commands.append(Command(
            f"if {exists}; then {profile.action(service, 'restart')} >&2; fi",
            summary=f"{profile.action(service, 'restart')} (after the files are restored)",
            deferred=True))
    if not record.get("was_enabled"):
        commands.append(Command(profile.disable(service) + " >&2 || true",
                                summary=profile.disable(service)))
    return commands
