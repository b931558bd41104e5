"""What the operator sees while a run goes: live progress on a terminal, plain lines elsewhere.

The live printer is driven with events (as the engine emits them) into a recording rich
console that claims to be a terminal. `screen` renders the live area as it stands (what
`Live` redraws ten times a second); `printed` is what was printed for good above it. A fake
clock makes the times on screen exact.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hadeploy.console import ProgressPrinter, make_console
from hadeploy.engine import Engine
from hadeploy.errors import StepFailed
from hadeploy.events import Event
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, now
from hadeploy.live import FRAMES, LivePrinter, progress_printer, wants_live
from hadeploy.ops.base import Command, Fact, HostContext, Operation, Probe
from hadeploy.redact import Redactor
from hadeploy.render.secrets import MASK
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeHost, FakeTransport

WIDTH = 120
SECRET = "Sup3r-Secret-4711"
HOSTS = ("lb1", "lb2", "lb3")
PREFLIGHT = "Preflight: platform, interface, VIP and ports"


def terminal() -> Console:
    """A recording console that behaves as a colour terminal of WIDTH columns."""
    return Console(record=True, force_terminal=True, width=WIDTH, file=io.StringIO(),
                   color_system="standard")


class Run:
    """Feeds events to a `LivePrinter` at the times of a fake clock."""

    def __init__(self, total: int = 7, secrets: tuple[str, ...] = (SECRET,)) -> None:
        self.now = 1000.0
        self.console = terminal()
        self.printer = LivePrinter(self.console, total, Redactor(secrets),
                                   clock=lambda: self.now, auto_refresh=False)

    def __call__(self, what: str, step: str | None = None, host: str | None = None, /,
                 after: float = 0.0, **data: Any) -> None:
        self.now += after
        self.printer(Event(what, "run-1", step, host, data, time=self.now))

    def start(self, hosts: tuple[str, ...] = HOSTS) -> None:
        """Facts, then the run starts (a deploy)."""
        for host in hosts:
            self("facts", None, host, platform="debian", init="systemd")
        self("run-started", phase="lb", kind="deploy")

    def screen(self) -> list[str]:
        """The live area as it would be drawn now, line by line."""
        out = terminal()
        out.print(self.printer.renderable())
        return out.export_text().splitlines()

    def printed(self) -> list[str]:
        """The lines printed for good since the last call."""
        return self.console.export_text(clear=True).splitlines()


def line_of(lines: list[str], *words: str) -> str:
    """The one line holding every word in `words`."""
    found = [line for line in lines if all(w in line for w in words)]
    assert len(found) == 1, f"{words} in {len(found)} lines of:\n" + "\n".join(lines)
    return found[0]


def test_running_step_shows_spinner_per_running_host_elapsed_time_and_counts() -> None:
    run = Run()
    run.start()
    run("step-started", "lb.preflight", title=PREFLIGHT, hosts=list(HOSTS))
    run("host-started", "lb.preflight", "lb1")
    run("host-started", "lb.preflight", "lb2", after=0.5)
    run("command", "lb.preflight", "lb1", after=1.0, command="ip -o addr show dev eth0",
        exited=0, duration=0.2)
    run("host-changed", "lb.preflight", "lb1", after=0.5, duration=1.9)
    run.now += 0.5

    screen = run.screen()
    head = line_of(screen, "[1/7] lb.preflight")
    assert head[0] in FRAMES and PREFLIGHT in head
    assert "2.5s" in head and "1 changed, 0 ok, 0 failed" in head
    lb1 = line_of(screen, "lb1")
    assert "✔" in lb1 and "changed" in lb1 and "1.9s" in lb1
    assert not any(frame in lb1 for frame in FRAMES)
    lb2 = line_of(screen, "lb2")
    assert lb2.split()[0] in FRAMES and "running" in lb2 and "2.0s" in lb2
    lb3 = line_of(screen, "lb3")  # not started yet: no spinner
    assert "waiting" in lb3 and not any(frame in lb3 for frame in FRAMES)
    assert "run so far: 1 changed, 0 ok, 0 failed" in line_of(screen, "run so far")
    # facts were printed for good; the step is only in the live area while it runs
    assert [line.split() for line in run.printed()] == [
        [h, "debian", "(systemd)"] for h in HOSTS]


def test_running_host_shows_its_last_command() -> None:
    run = Run()
    run.start()
    run("step-started", "lb.packages", title="Install", hosts=["lb1"])
    run("host-started", "lb.packages", "lb1")
    run("command", "lb.packages", "lb1", after=1.0,
        command="apt-get update\napt-get install -y haproxy", exited=0, duration=0.9)
    lb1 = line_of(run.screen(), "lb1")
    assert lb1.endswith("$ apt-get update")


def test_a_notice_is_printed_for_good_and_shown_on_the_host_line() -> None:
    text = "waiting (at most 15 min) for the package manager run already under way: pid 812"
    run = Run()
    run.start()
    run.printed()
    run("step-started", "lb.packages", title="Install", hosts=["lb1"])
    run("host-started", "lb.packages", "lb1")
    run("notice", "lb.packages", "lb1", text=text)
    assert run.printed() == [f"    lb1              {text}"]
    assert line_of(run.screen(), "lb1").endswith(f"running  0.0s  {text}")
    run("command", "lb.packages", "lb1", after=2.0, command="apt-get install", exited=0)
    assert line_of(run.screen(), "lb1").endswith("$ apt-get install")
    out = io.StringIO()
    ProgressPrinter(make_console(out), 7)(Event("notice", "r", "lb.packages", "lb1",
                                                {"text": text}))
    assert out.getvalue().splitlines() == [f"      lb1              {text}"]


def test_finished_step_stays_as_final_lines_and_leaves_the_live_area() -> None:
    run = Run()
    run.start()
    run.printed()
    run("step-started", "lb.preflight", title=PREFLIGHT, hosts=list(HOSTS))
    for host in HOSTS:
        run("host-started", "lb.preflight", host)
    run("host-ok", "lb.preflight", "lb1", after=1.0, duration=1.0)
    run("host-changed", "lb.preflight", "lb2", after=0.25, duration=1.25)
    run("host-ok", "lb.preflight", "lb3", after=0.25, duration=1.5)
    run("step-finished", "lb.preflight", after=0.1, failed=[])

    final = run.printed()
    head = line_of(final, "[1/7] lb.preflight")
    assert head.startswith("✔") and PREFLIGHT in head
    assert "1.6s" in head and "1 changed, 2 ok, 0 failed" in head
    assert line_of(final, "lb1").split() == ["✔", "lb1", "ok", "1.0s"]
    assert line_of(final, "lb2").split() == ["✔", "lb2", "changed", "1.2s"]
    assert line_of(final, "lb3").split() == ["✔", "lb3", "ok", "1.5s"]
    assert len(final) == 4

    run("step-started", "lb.packages", title="Install haproxy and keepalived",
        hosts=list(HOSTS))
    screen = run.screen()
    assert not any("lb.preflight" in line for line in screen)
    assert line_of(screen, "[2/7] lb.packages")[0] in FRAMES
    assert "run so far: 1 changed, 2 ok, 0 failed" in line_of(screen, "run so far")
    assert run.printer.summary() == "1 changed, 2 ok, 0 failed"


def test_a_long_title_is_shortened_to_keep_the_line_and_its_counts() -> None:
    run = Run()
    run.start()
    run("step-started", "lb.preflight", title="word " * 40, hosts=["lb1"])
    head = run.screen()[0]
    assert len(head) < WIDTH and "word wor" in head and "…" in head
    assert head.endswith("0.0s  0 changed, 0 ok, 0 failed")


def test_skipped_step_is_one_final_line() -> None:
    run = Run()
    run.start()
    run.printed()
    run("step-skipped", "lb.preflight", title=PREFLIGHT, reason="done in this run")
    assert run.printed() == [f"– [1/7] lb.preflight  {PREFLIGHT}  (done earlier in this run)"]


def test_failed_host_shows_command_exit_code_and_last_stderr_lines() -> None:
    run = Run()
    run.start()
    run.printed()
    run("step-started", "lb.packages", title="Install haproxy and keepalived", hosts=["lb1"])
    run("host-started", "lb.packages", "lb1")
    stderr = "\n".join(f"apt line {i}" for i in range(1, 13))
    run("host-failed", "lb.packages", "lb1", after=4.0,
        error="lb1: command exited 100: apt-get install -y haproxy keepalived",
        command="apt-get install -y haproxy keepalived", exited=100, stderr=stderr)
    # shown at once in the live area, before the step ends
    assert "$ apt-get install -y haproxy keepalived" in run.screen()[2]
    run("step-finished", "lb.packages", failed=["lb1"])

    final = run.printed()
    assert final[0].startswith("✘ [1/7] lb.packages")
    assert "0 changed, 0 ok, 1 failed" in final[0]
    assert final[1].split() == ["✘", "lb1", "failed", "4.0s"]
    assert final[2].strip() == "$ apt-get install -y haproxy keepalived"
    assert final[3].strip() == "exited 100; last lines of its stderr:"
    assert [line.strip() for line in final[4:]] == [f"│ apt line {i}" for i in range(5, 13)]
    assert run.printer.summary() == "0 changed, 0 ok, 1 failed"


def test_failure_without_a_command_shows_the_error() -> None:
    run = Run()
    run.start()
    run.printed()
    run("step-started", "lb.services", title="Start", hosts=["lb1", "lb2"])
    run("host-started", "lb.services", "lb1")
    run("host-failed", "lb.services", "lb1", after=2.0,
        error="lb1: not in the desired state after applying: haproxy running",
        reason="not in the desired state after applying: haproxy running")
    run("host-started", "lb.services", "lb2")  # a serial step would not go on; shown anyway
    run("step-finished", "lb.services", failed=["lb1"])
    final = run.printed()
    assert final[2].strip() == "not in the desired state after applying: haproxy running"
    assert final[3].split()[:3] == ["■", "lb2", "stopped"]


def test_secrets_never_reach_the_screen() -> None:
    run = Run()
    run.start()
    run("step-started", "lb.haproxy-cfg", title=f"Push with {SECRET}", hosts=["lb1"])
    run("host-started", "lb.haproxy-cfg", "lb1")
    run("command", "lb.haproxy-cfg", "lb1", command=f"echo {SECRET} | chpasswd", exited=0,
        duration=0.1)
    shown = "\n".join(run.screen())
    assert SECRET not in shown and f"$ echo {MASK} | chpasswd" in shown
    run("host-failed", "lb.haproxy-cfg", "lb1", error=f"lb1: {SECRET}",
        command=f"haproxy -c --pass {SECRET}", exited=1, stderr=f"bad password {SECRET}")
    run("run-failed", status="failed", error=f"boom {SECRET}")
    printed = "\n".join(run.printed())
    assert SECRET not in printed
    assert f"$ haproxy -c --pass {MASK}" in printed and f"│ bad password {MASK}" in printed


def test_rollback_hosts_spin_from_the_step_start() -> None:
    run = Run(total=0)
    run("run-started", phase="lb", kind="rollback")
    run("step-started", "run-1/lb.services", title="undo Start", hosts=["lb1", "lb2"])
    run.now += 1.0
    screen = run.screen()
    assert line_of(screen, "run-1/lb.services")[0] in FRAMES  # no [i/N] without a total
    assert all(line_of(screen, h).split()[:1][0] in FRAMES for h in ("lb1", "lb2"))
    run("host-rolled-back", "run-1/lb.services", "lb1", after=0.5)
    run("host-rolled-back", "run-1/lb.services", "lb2")
    run("run-finished", status="done")
    final = run.printed()
    assert line_of(final, "lb1").split() == ["↺", "lb1", "rolled-back", "1.5s"]
    assert run.screen() == []


def test_interrupted_run_leaves_running_hosts_stopped() -> None:
    run = Run()
    run.start()
    run.printed()
    run("step-started", "lb.packages", title="Install", hosts=["lb1", "lb2"])
    run("host-started", "lb.packages", "lb1")
    run("run-failed", after=3.0, status="interrupted")
    final = run.printed()
    assert final[0].startswith("■ [1/7] lb.packages")
    assert final[1].split() == ["■", "lb1", "stopped", "3.0s"]
    assert final[2].split() == ["·", "lb2", "not", "run"]


def test_the_live_display_stops_and_leaves_only_the_final_lines() -> None:
    run = Run()
    with run.printer:
        run.start()
        run("step-started", "lb.preflight", title=PREFLIGHT, hosts=["lb1"])
        run("host-started", "lb.preflight", "lb1")
        run.printer.refresh()
        assert any(line.startswith(tuple(FRAMES)) for line in run.printed())
        run("host-ok", "lb.preflight", "lb1", after=1.0, duration=1.0)
        run("step-finished", "lb.preflight", failed=[])
        run("run-finished", status="done")
        assert sum("✔ [1/7] lb.preflight" in line for line in run.printed()) == 1
    run.console.print("after")  # nothing live is drawn below it any more
    assert run.printed()[-1:] == ["after"]
    run.console.print("next")
    assert run.printed() == ["next"]


def test_a_crash_mid_step_leaves_the_step_on_screen() -> None:
    run = Run()
    with pytest.raises(KeyboardInterrupt), run.printer:
        run.start()
        run("step-started", "lb.preflight", title=PREFLIGHT, hosts=["lb1"])
        run("host-started", "lb.preflight", "lb1")
        run.printed()
        run.now += 2.0
        raise KeyboardInterrupt
    assert "■ lb1  stopped  2.0s" in "\n".join(run.printed())


# -- choosing the printer -------------------------------------------------------------------


def test_live_only_on_a_terminal_without_no_color_or_json(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = terminal()
    assert wants_live(tty, json_events=False)
    assert isinstance(progress_printer(tty, 7, Redactor(), False), LivePrinter)
    assert not wants_live(tty, json_events=True)
    plain = make_console(io.StringIO())  # not a terminal
    assert not wants_live(plain, json_events=False)
    assert isinstance(progress_printer(plain, 7, Redactor(), False), ProgressPrinter)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_live(tty, json_events=False)


def test_plain_lines_off_a_terminal() -> None:
    """The lines logs and lab tests read: unchanged by the live printer's arrival."""
    out = io.StringIO()
    printer = ProgressPrinter(make_console(out), 7)
    with printer:
        printer(Event("facts", "r", None, "lb1", {"platform": "debian", "init": "systemd"}))
        printer(Event("step-started", "r", "lb.preflight", None, {"title": PREFLIGHT}))
        printer(Event("host-started", "r", "lb.preflight", "lb1"))
        printer(Event("host-changed", "r", "lb.preflight", "lb1", {"duration": 1.25}))
        printer(Event("host-failed", "r", "lb.preflight", "lb2", {"error": "lb2: oops"}))
        printer(Event("step-skipped", "r", "lb.packages", None, {"title": "Install"}))
    assert out.getvalue().splitlines() == [
        "      lb1              debian (systemd)",
        f"[1/7] lb.preflight  {PREFLIGHT}",
        "      lb1              changed 1.25s",
        "      lb2              failed",
        "        lb2: oops",
        "[2/7] lb.packages  Install  (done earlier in this run)",
    ]
    assert "\x1b" not in out.getvalue()
    assert printer.summary() == "1 changed, 0 ok, 1 failed"


# -- from the engine's own events -----------------------------------------------------------


@dataclass(frozen=True)
class FailingWrite(Operation[Probe]):
    """Writes a file with a command that fails, saying why on stderr (with the secret)."""

    op_id: str = "write"

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw("cat /f")

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.exited == 0

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo no space left for {SECRET} >&2; exit 28")]


def test_engine_failure_reaches_the_screen_with_command_and_exit_code(tmp_path: Path) -> None:
    transport = FakeTransport()
    transport.on(FakeHost("lb1"))
    run = Run()
    engine = Engine(transport, {"lb1": Node("lb1", IPv4Address("198.18.0.11"))}, "debian",
                    run.printer, secrets={"HADEPLOY_X": SECRET}, stop=threading.Event())
    engine.apply_facts({"lb1": {"platform": "debian", "init": "systemd"}})
    journal = Journal(tmp_path / "run.json", "run-1", "lb", "deploy", "hosts.toml", "fp",
                      now())
    runbook = Runbook("lb", (Step("lb.write", "Write", {"lb1": (FailingWrite(),)}),))
    with pytest.raises(StepFailed):
        engine.run(runbook, journal)
    final = run.printed()
    assert final[0].startswith("✘ [1/1] lb.write")
    assert final[1].split()[:3] == ["✘", "lb1", "failed"]
    assert final[2].strip() == f"$ echo no space left for {MASK} >&2; exit 28"
    assert final[3].strip() == "exited 28; last lines of its stderr:"
    assert final[4].strip() == f"│ no space left for {MASK}"


# -- a rollback's closing line ----------------------------------------------------------------


def rollback_events(printer: Any, steps: tuple[str, ...] = ("lb.services", "lb.sysctl"),
                    ) -> None:
    """What the engine emits while undoing `steps` on every host of HOSTS."""
    printer(Event("run-started", "rb-1", None, None, {"phase": "lb", "kind": "rollback"}))
    for step in steps:
        printer(Event("step-started", "rb-1", f"run-1/{step}", None,
                      {"title": f"undo {step}", "hosts": list(HOSTS)}))
        for host in HOSTS:
            printer(Event("host-rolled-back", "rb-1", f"run-1/{step}", host))
    printer(Event("run-finished", "rb-1", None, None, {"status": "done"}))


def test_both_printers_count_the_host_steps_a_rollback_undid() -> None:
    plain = ProgressPrinter(make_console(io.StringIO()), 0)
    rollback_events(plain)
    assert plain.rolled_back == 6
    assert plain.summary() == "0 changed, 0 ok, 0 failed"  # a deploy's words are unchanged
    run = Run(total=0)
    rollback_events(run.printer)
    assert run.printer.rolled_back == 6
    assert run.printer.summary() == "0 changed, 0 ok, 0 failed"
