"""The operator's commands as plain functions, each declared once (`COMMANDS`): the
`hadeploy` command line (hadeploy/cli.py, no invoke) and the invoke tasks (hadeploy/tasks.py)
are both built from them, so `hadeploy deploy-lb` and `invoke deploy-lb` take the same flags.

This is the edge: confirmation, printing, exit codes. `HadeployError` is caught here, once
(`guard`), and shown without a traceback. The exit codes of every command:

    0    done (verify: healthy)
    1    a step failed, the journal is resumable (verify: unhealthy)
    2    refused before touching any host: bad arguments or inventory, a missing secret or
         local file, the lock held, no confirmation
    130  stopped by the operator (Ctrl-C, SIGTERM); the journal is resumable
"""

from __future__ import annotations

import json as json_lib
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hadeploy.app import RENDERABLE, Deployment, render_file
from hadeploy.errors import HadeployError, Interrupted, InventoryError, JournalError, StepFailed
from hadeploy.journal import RunStore, state_dir_for

if TYPE_CHECKING:
    from rich.console import Console

    from hadeploy.live import Printer

# The presentation (rich: console, live progress, status and verify reports) is imported by
# the tasks that print, once they print: a run starts connecting before it loads.

PHASE_TASK = {"lb": "deploy-lb", "controllers": "deploy-controllers", "restart": "restart"}
HOSTS_HELP = "inventory file (default: $HADEPLOY_HOSTS or ./hosts.toml)"
BREAK_LOCK_HELP = ("take over a host's run lock that has had no heartbeat for a minute (its "
                   "workstation died)")
RENDER_USAGE = (f"usage: render {'|'.join(RENDERABLE)} [--hosts FILE] [--node NODE]\n"
                "  prints the file hadeploy would write (secrets masked); --node: keepalived.conf "
                "of one balancer")


def default_hosts() -> str:
    """The inventory used when --hosts is not given: $HADEPLOY_HOSTS or ./hosts.toml."""
    return os.environ.get("HADEPLOY_HOSTS", "hosts.toml")


def guard(action: Callable[[], int]) -> int:
    """Run `action`; a hadeploy error becomes a message on stderr and its exit code (above)."""
    try:
        return action()
    except (InventoryError, JournalError) as exc:
        return refuse(f"error: {exc}", 2)
    except StepFailed as exc:
        return refuse(f"error: {describe_failure(exc)}", 1)
    except HadeployError as exc:
        return refuse(f"error: {exc}", 1)
    except KeyboardInterrupt:  # at a prompt: nothing was running yet
        return refuse("\nStopped at your request.", 130)


def refuse(message: str, code: int) -> int:
    """Print `message` on stderr and return `code`."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    return code


def describe_failure(exc: StepFailed) -> str:
    """A failed step as the operator reads it: what stopped, then one line per host."""
    hosts = ", ".join(sorted(exc.failures))
    if exc.step_id == "facts":
        head = (f"could not start on {hosts}: connecting and reading the platform failed "
                "before any step ran, so nothing was changed")
    else:
        head = f"step {exc.step_id} failed on {hosts}"
    # reasons(): each host's error without its name, secrets masked
    lines = [head, *(f"  {host}: {reason}" for host, reason in sorted(exc.reasons().items()))]
    return "\n".join(lines)


def _next_steps(phase: str, hosts: str) -> str:
    task_name = PHASE_TASK[phase]
    return (f"The journal is saved. To continue once the cause is fixed:\n"
            f"    invoke {task_name} --resume --hosts {hosts}\n"
            f"To undo what this phase changed:\n"
            f"    invoke rollback --phase {phase} --hosts {hosts}")


class RunDisplay:
    """A run's console, progress display and event log. They are made once the run starts
    connecting (`start`, called by the deployment): their code (rich) loads while the hosts'
    handshakes go on. `shown` closes them, the live display first, when the run ends."""

    def __init__(self, deployment: Deployment, json_events: bool) -> None:
        self.deployment = deployment
        self.json_events = json_events
        self.shown = ExitStack()
        self._console: Console | None = None
        self._printer: Printer | None = None

    @property
    def console(self) -> Console:
        """The console (stderr when JSON events go to stdout), made on first use."""
        if self._console is None:
            from hadeploy.console import make_console

            self._console = make_console(sys.stderr if self.json_events else sys.stdout)
        return self._console

    def start(self) -> None:
        """Show the run's progress (live on a terminal, plain lines otherwise; the number of
        steps comes with the run-started event) and log its events."""
        from hadeploy.console import EventLog
        from hadeploy.live import progress_printer

        deployment = self.deployment
        log = EventLog(deployment.store.dir / "events.log", deployment.redactor,
                       echo=sys.stdout if self.json_events else None)
        self.shown.callback(log.close)
        printer = progress_printer(self.console, 0, deployment.redactor, self.json_events)
        self._printer = self.shown.enter_context(printer)
        deployment.listeners += [printer, log]

    def summary(self) -> str:
        """The run's counts of changed, ok and failed host-steps."""
        assert self._printer is not None, "the run never started"
        return self._printer.summary()


def run_phase(phase: str, hosts: str | None, dry_run: bool, offline: bool, resume: bool,
              yes: bool, json_events: bool, only: tuple[str, ...] = (),
              break_lock: bool = False) -> int:
    """Plan or deploy `phase`; return the exit code."""
    hosts = hosts or default_hosts()
    deployment = Deployment(hosts)
    if offline or dry_run:
        _, items = deployment.plan(phase, offline=offline, only=only)
        from hadeploy.console import make_console, print_plan

        print_plan(make_console(sys.stderr if json_events else sys.stdout), items, offline)
        return 0
    display = RunDisplay(deployment, json_events)
    if not yes:
        from hadeploy.console import print_plan

        console = display.console
        if not sys.stdin.isatty():
            console.print("Refusing to change hosts without confirmation: no terminal to ask on. "
                          "Pass --yes to run, or --dry-run to see the plan first.")
            return 2
        _, items = deployment.plan(phase, offline=False, only=only)
        to_change, _ = print_plan(console, items, offline=False)
        answer = console.input(f"\nApply {to_change} changes to {deployment.inv.name}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            console.print("Nothing was changed.")
            return 0
    try:
        with display.shown:
            journal = deployment.deploy(phase, resume=resume, only=only, break_lock=break_lock,
                                        connecting=display.start)
    except Interrupted:
        display.console.print(f"\nStopped at your request after the current command.\n"
                              f"{_next_steps(phase, hosts)}")
        return 130
    except StepFailed as exc:
        failed = deployment.store.latest(phase)
        # A run that changed nothing (a read-only preflight refused) leaves nothing to resume
        # or undo, and a fix in the inventory would make --resume refuse: start again.
        changed = failed is not None and any(
            failed.changed_steps(host) for step in failed.steps for host in step.hosts)
        after = ("Fix the cause and run the same command again." if exc.step_id == "facts"
                 else _next_steps(phase, hosts) if changed
                 else "This run changed nothing on any host. Fix the cause and run the same "
                      "command again.")
        from rich.markup import escape

        # escaped: errors quote config and shell text such as [DEFAULT] or [Errno 111]
        display.console.print(f"\n[bold red]FAILED[/bold red] {escape(describe_failure(exc))}"
                              f"\n\n{escape(after)}")
        return 1
    display.console.print(f"\nDone ({display.summary()}). Journal: {journal.path}")
    return 0


PHASE_HELP = {
    "hosts": HOSTS_HELP, "dry_run": "probe the hosts read-only and print the plan",
    "offline": "print the plan without connecting", "resume":
    "continue the last failed or interrupted run", "yes": "do not ask for confirmation",
    "json": "write one JSON object per event to stdout", "break_lock": BREAK_LOCK_HELP}
SERVICE_PHASE_HELP = {
    **PHASE_HELP,
    "service": "only this catalog service (repeatable); default: every balanced service"}


def deploy_lb(hosts: str | None = None, dry_run: bool = False, offline: bool = False,
              resume: bool = False, yes: bool = False, json: bool = False,
              break_lock: bool = False) -> int:
    """Install and configure haproxy + keepalived on the load balancers (guide step 1)."""
    return guard(lambda: run_phase("lb", hosts, dry_run, offline, resume, yes, json,
                                   break_lock=break_lock))


def deploy_controllers(hosts: str | None = None, service: list[str] | None = None,
                       dry_run: bool = False, offline: bool = False, resume: bool = False,
                       yes: bool = False, json: bool = False, break_lock: bool = False) -> int:
    """Scale the OpenStack APIs out to the new controllers behind the VIP (guide step 2)."""
    only = tuple(service or ())
    return guard(lambda: run_phase("controllers", hosts, dry_run, offline, resume, yes, json,
                                   only, break_lock))


def restart(hosts: str | None = None, service: list[str] | None = None,
            dry_run: bool = False, offline: bool = False, resume: bool = False,
            yes: bool = False, json: bool = False, break_lock: bool = False) -> int:
    """Restart a service's running daemons on every controller, one at a time, each drained
    on the balancers first (no request through the VIP is cut)."""
    only = tuple(service or ())
    return guard(lambda: run_phase("restart", hosts, dry_run, offline, resume, yes, json, only,
                                   break_lock))


def rollback(phase: str = "lb", hosts: str | None = None, yes: bool = False,
             break_lock: bool = False) -> int:
    """Undo what deploy runs of a phase changed, newest first, from the journal."""

    def action() -> int:
        from hadeploy.console import EventLog, make_console
        from hadeploy.live import progress_printer

        path = hosts or default_hosts()
        console = make_console()
        if phase not in ("lb", "controllers"):
            raise InventoryError(path, [f"--phase {phase!r}: choose one of lb, controllers"])
        if not yes and not sys.stdin.isatty():
            console.print("Refusing to roll back without confirmation: pass --yes.")
            return 2
        deployment = Deployment(path)
        printer = progress_printer(console, 0, deployment.redactor, json_events=False)
        log = EventLog(deployment.store.dir / "events.log", deployment.redactor)
        deployment.listeners += [printer, log]
        try:
            with printer:
                journal = deployment.rollback(phase, break_lock=break_lock)
        except Interrupted:
            console.print(f"\nStopped at your request after the current command. To finish "
                          f"undoing:\n    invoke rollback --phase {phase} --hosts {path}")
            return 130
        finally:
            log.close()
        undone = printer.rolled_back
        console.print(f"\nRolled back {undone} host-step{'s' if undone != 1 else ''}. "
                      f"Journal: {journal.path}")
        return 0

    return guard(action)


def render(what: str, hosts: str | None = None, node: str | None = None) -> int:
    """Print a file hadeploy would write (secrets masked): `render haproxy`."""
    if what in ("-h", "--help"):  # invoke hands a positional argument's place `--help` too
        print(f"{render.__doc__}\n\n{RENDER_USAGE}")
        return 0
    if what not in RENDERABLE:
        return refuse(f"error: cannot render {what!r}; choose one of {', '.join(RENDERABLE)}\n"
                      f"{RENDER_USAGE}", 2)

    def action() -> int:
        sys.stdout.write(render_file(hosts or default_hosts(), what, node))
        return 0

    return guard(action)


def status(hosts: str | None = None) -> int:
    """Show the runs in the journal and, for the latest, every step and host."""

    def action() -> int:
        from hadeploy.console import make_console
        from hadeploy.status import print_status

        path = hosts or default_hosts()
        print_status(make_console(), RunStore(state_dir_for(path)))
        return 0

    return guard(action)


def verify(hosts: str | None = None, json: bool = False) -> int:
    """Live health report: VIP holder, keepalived/haproxy per node, backends, frontends."""

    def action() -> int:
        report = Deployment(hosts or default_hosts()).verify()
        if json:
            sys.stdout.write(json_lib.dumps(report.to_json(), sort_keys=True) + "\n")
        else:
            from hadeploy.console import make_console
            from hadeploy.verify_console import print_report

            print_report(make_console(), report)
        return 0 if report.healthy else 1

    return guard(action)


@dataclass(frozen=True)
class Command:
    """An operator command: its function, which takes keyword arguments and returns the exit
    code, and how its arguments read on a command line. The flags follow the function's
    signature: `dry_run` is `--dry-run`, a bool a flag, a parameter without a default a
    positional argument, one named in `repeatable` a list given once per value."""

    function: Callable[..., int]
    help: Mapping[str, str]
    repeatable: tuple[str, ...] = ()
    usage: str = ""  # shown in the command's help after its options

    @property
    def name(self) -> str:
        """The command's name on a command line (`deploy-lb`)."""
        return self.function.__name__.replace("_", "-")


COMMANDS = {command.name: command for command in (
    Command(deploy_lb, PHASE_HELP),
    Command(deploy_controllers, SERVICE_PHASE_HELP, repeatable=("service",)),
    Command(restart, SERVICE_PHASE_HELP, repeatable=("service",)),
    Command(rollback, {"hosts": HOSTS_HELP, "phase": "lb or controllers",
                       "yes": "do not ask for confirmation", "break_lock": BREAK_LOCK_HELP}),
    Command(render, {"hosts": HOSTS_HELP, "what": f"the file: {', '.join(RENDERABLE)}",
                     "node": "keepalived: one balancer only"}, usage=RENDER_USAGE),
    Command(status, {"hosts": HOSTS_HELP}),
    Command(verify, {"hosts": HOSTS_HELP, "json": "print the report as one JSON object"}),
)}
