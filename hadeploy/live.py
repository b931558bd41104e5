"""Live progress on a terminal: a spinner per running host; finished steps stay as lines.

`LivePrinter` listens to the engine's events (see hadeploy.events) like the plain
`ProgressPrinter`, but draws with rich's `Live`. The step in progress shows its elapsed
time, its changed/ok/failed counts and one line per host: a spinner, the time and the last
command while the host runs. When the step ends, its final lines (state and duration per
host; for a failed host the command, its exit code and the last lines of its stderr) are
printed above the live area, where they stay. A footer keeps the run's elapsed time and
totals. The live area is cleared when the display stops, so the caller (tasks.py) prints
the closing summary and the commands to resume or roll back right below the step lines.

Used only on a terminal, without NO_COLOR and without --json (`wants_live`); elsewhere the
plain lines of `ProgressPrinter` are printed, which logs and the lab tests parse.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from hadeploy.console import ProgressPrinter
from hadeploy.events import Event
from hadeploy.redact import Redactor

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # rich's "dots" spinner
FRAME_SECONDS = 0.08
# Marks and styles of a host's (or a step's) final state.
MARKS = {"ok": ("✔", "green"), "changed": ("✔", "yellow"), "failed": ("✘", "bold red"),
         "rolled-back": ("↺", "magenta"), "stopped": ("■", "red"), "not run": ("·", "dim"),
         "waiting": ("·", "dim")}
COUNTED = ("changed", "ok", "failed")
ERROR_LINES = 12  # of an error that is not a failed command (as the plain printer shows)
STDERR_LINES = 8  # last lines of a failed command's stderr
HOST_INDENT = "    "
DETAIL_INDENT = "        "


class Printer(Protocol):
    """What tasks.py needs of a progress printer: a listener, a display span, a summary and
    the count of host-steps a rollback undid."""

    rolled_back: int

    def __call__(self, event: Event) -> None: ...

    def __enter__(self) -> Printer: ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def summary(self) -> str: ...


def progress_printer(console: Console, total_steps: int, redact: Redactor,
                     json_events: bool) -> Printer:
    """A `LivePrinter` when `wants_live`, else the plain `ProgressPrinter`."""
    if wants_live(console, json_events):
        return LivePrinter(console, total_steps, redact)
    return ProgressPrinter(console, total_steps)


def wants_live(console: Console, json_events: bool) -> bool:
    """Whether to draw live progress: a real terminal, no NO_COLOR, no --json."""
    return (not json_events and console.is_terminal and not console.is_dumb_terminal
            and "NO_COLOR" not in os.environ)


def seconds(value: float) -> str:
    """`4.2s`, or `3m05s` past a minute."""
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m{rest:02d}s"


def count_text(counts: dict[str, int]) -> str:
    """`N changed, M ok, F failed` (the same words as the closing summary)."""
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in COUNTED)


@dataclass
class _Host:
    """One host's part of the step on screen."""

    name: str
    state: str = "waiting"  # waiting, running, then ok/changed/failed/rolled-back/stopped
    started: float | None = None
    duration: float | None = None
    command: str = ""  # the last command it ran, first line
    notice: str = ""  # what the command running now waits for, if it said
    detail: list[Text] = field(default_factory=list)  # why it failed


@dataclass
class _Step:
    """The step in progress."""

    id: str
    title: str
    number: str  # "[3/7] ", or "" when the total is unknown (rollback)
    started: float
    hosts: dict[str, _Host]

    def counts(self) -> dict[str, int]:
        """Hosts per final state so far."""
        counts = dict.fromkeys(COUNTED, 0)
        for host in self.hosts.values():
            if host.state in counts:
                counts[host.state] += 1
        return counts


class LivePrinter:
    """Draws the run live from its events; see the module docstring.

    Events come from the engine's worker threads; `Live` redraws from its own thread. The
    state lock is only ever held briefly (never while printing), and prints are serialised
    by a second lock taken first, so the two cannot deadlock with `Live`'s own lock.
    """

    def __init__(self, console: Console, total_steps: int, redact: Redactor | None = None,
                 clock: Callable[[], float] = time.time, auto_refresh: bool = True) -> None:
        self.console = console
        self.total = total_steps
        self.redact = redact or Redactor()
        self.clock = clock
        self.index = 0
        self.counts = dict.fromkeys(COUNTED, 0)
        self.rolled_back = 0  # host-steps a rollback undid
        self.step: _Step | None = None
        self._began = clock()
        self._run_started: float | None = None
        self._hosts_start_with_step = False  # rollback steps have no host-started events
        self._finished = False
        self._state_lock = threading.Lock()
        self._print_lock = threading.Lock()
        self._live = Live(console=console, get_renderable=self.renderable, transient=True,
                          auto_refresh=auto_refresh, refresh_per_second=10)

    # -- listener ----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._print_lock:
            with self._state_lock:
                lines = self._update(event)
            self._print(lines)

    def __enter__(self) -> LivePrinter:
        self._live.start(refresh=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Leave the step in progress on screen as it stood (a crash, Ctrl-C), then stop."""
        with self._print_lock:
            with self._state_lock:
                lines = self._finish_step(self.clock())
                self._finished = True
            self._print(lines)
        self._live.stop()

    def _print(self, lines: list[Text]) -> None:
        """Print `lines` for good, above the live area (the caller holds the print lock)."""
        if not lines:
            return
        if self._live.is_started:  # else the old live area is drawn again below the lines
            self._live.refresh()
        self.console.print(Group(*lines))  # at once: the live area is redrawn after each print

    def refresh(self) -> None:
        """Redraw the live area now (it also redraws by itself, ten times a second)."""
        self._live.refresh()

    def summary(self) -> str:
        """`N changed, M ok, F failed` for the closing line."""
        return count_text(self.counts)

    def _update(self, event: Event) -> list[Text]:
        """Apply `event`; return the lines to print above the live area for good."""
        kind, data = event.kind, event.data
        if kind == "run-started":
            self._run_started = event.time
            self._hosts_start_with_step = data.get("kind") == "rollback"
            self.total = data.get("steps") or self.total  # a deploy's runbook, once built
            return []
        if kind == "facts":
            return [Text(f"{HOST_INDENT}{self.redact(event.host or ''):<16} "
                         f"{data.get('platform') or '?'} ({data.get('init')})", style="dim")]
        if kind in ("step-started", "step-skipped"):
            lines = self._finish_step(event.time)
            self.index += 1
            number = f"[{self.index}/{self.total}] " if self.total else ""
            step_id, title = self.redact(event.step or ""), self.redact(data.get("title", ""))
            if kind == "step-skipped":
                return [*lines, self._head("–", "dim", number, step_id, title,
                                           "(done earlier in this run)")]
            state = "running" if self._hosts_start_with_step else "waiting"
            started = event.time if self._hosts_start_with_step else None
            names = [self.redact(h) for h in data.get("hosts", [])]
            hosts = {h: _Host(h, state, started) for h in names}
            self.step = _Step(step_id, title, number, event.time, hosts)
            return lines
        if kind in ("step-finished", "run-finished", "run-failed"):
            lines = self._finish_step(event.time)
            self._finished = kind != "step-finished"
            return lines
        host = self._host(event)
        if host is None:
            return []
        if kind == "notice":
            text = self.redact(str(data.get("text", "")))
            host.notice = text
            return [Text(f"{HOST_INDENT}{host.name:<16} {text}", style="yellow")]
        if kind == "host-started":
            host.state, host.started = "running", event.time
        elif kind == "command":
            host.notice = ""
            host.command = self.redact(str(data.get("command", ""))).strip().split("\n")[0]
        elif kind.startswith("host-"):
            self._host_done(host, kind.removeprefix("host-"), event)
        return []

    def _host(self, event: Event) -> _Host | None:
        """The host an event is about, in the step in progress (None for other steps)."""
        if self.step is None or event.host is None or \
                self.redact(event.step or "") != self.step.id:
            return None
        name = self.redact(event.host)
        return self.step.hosts.setdefault(name, _Host(name))

    def _host_done(self, host: _Host, state: str, event: Event) -> None:
        data = event.data
        host.state = state
        if state in self.counts:
            self.counts[state] += 1
        elif state == "rolled-back":
            self.rolled_back += 1
        if "duration" in data:
            host.duration = float(data["duration"])
        else:
            start = host.started if host.started is not None else \
                self.step.started if self.step else event.time
            host.duration = max(0.0, event.time - start)
        if state == "failed":
            host.detail = self._failure(host.name, data)

    def _failure(self, host: str, data: dict[str, object]) -> list[Text]:
        """A failed host's detail: the command, its exit code and stderr's last lines; or
        the error's first lines when no command failed (a verification, a lost host)."""
        if "command" in data:
            command = self.redact(str(data["command"])).strip().splitlines() or [""]
            lines = [Text(f"{DETAIL_INDENT}$ {command[0]}"
                          f"{' …' if len(command) > 1 else ''}", style="bold")]
            stderr = self.redact(str(data.get("stderr", ""))).strip().splitlines()
            tail = stderr[-STDERR_LINES:]
            said = "; last lines of its stderr:" if tail else "; no stderr"
            lines.append(Text(f"{DETAIL_INDENT}exited {data.get('exited')}{said}", style="red"))
            lines += [Text(f"{DETAIL_INDENT}│ {line}", style="red") for line in tail]
            return lines
        error = self.redact(str(data.get("reason", data.get("error", "")))).strip()
        return [Text(f"{DETAIL_INDENT}{line}", style="red")
                for line in error.splitlines()[:ERROR_LINES]]

    def _finish_step(self, now: float) -> list[Text]:
        """The final lines of the step in progress (ended at `now`), which leaves the live
        area for the lines above it."""
        step, self.step = self.step, None
        if step is None:
            return []
        for host in step.hosts.values():
            if host.state == "running":
                host.state = "stopped"
                host.duration = max(0.0, now - (host.started or step.started))
            elif host.state == "waiting":
                host.state = "not run"
        states = {h.state for h in step.hosts.values()}
        mark, style = (MARKS["failed"] if "failed" in states else
                       MARKS["stopped"] if states & {"stopped", "not run"} else
                       MARKS["changed"] if "changed" in states else MARKS["ok"])
        lines = [self._head(mark, style, step.number, step.id, step.title,
                            f"{seconds(max(0.0, now - step.started))}  "
                            f"{count_text(step.counts())}")]
        return lines + self._host_lines(step, "", now)

    # -- drawing -----------------------------------------------------------------------------

    def _fit(self, text: Text) -> Text:
        """`text` cut to one line of the console (an ellipsis marks the cut)."""
        text.no_wrap = True
        text.truncate(max(10, self.console.width - 1), overflow="ellipsis")
        return text

    def _head(self, mark: str, style: str, number: str, step_id: str, title: str,
              right: str) -> Text:
        """A step's line: mark, number and id, title (shortened to fit), then `right`."""
        left = Text.assemble((mark, style), " ", (f"{number}{step_id}", "bold"), "  ")
        room = self.console.width - 1 - len(left) - len(right) - 2
        shown = Text(title)
        if room < len(title):
            shown.truncate(max(room, 1), overflow="ellipsis")
        return self._fit(Text.assemble(left, shown, "  ", (right, "dim")))

    def _frame(self) -> str:
        """The spinner frame of this instant."""
        return FRAMES[int(self.console.get_time() / FRAME_SECONDS) % len(FRAMES)]

    def renderable(self) -> RenderableType:
        """The live area: the step in progress with a line per host, then the run's totals."""
        with self._state_lock:
            if self._finished:
                return Group()
            now, frame = self.clock(), self._frame()
            lines: list[Text] = []
            step = self.step
            if step is not None:
                lines.append(self._head(frame, "cyan", step.number, step.id, step.title,
                                        f"{seconds(now - step.started)}  "
                                        f"{count_text(step.counts())}"))
                lines += self._host_lines(step, frame, now)
            if self._run_started is None:
                lines.append(Text.assemble((frame, "cyan"), " connecting and reading each "
                                           "host's platform  ",
                                           (seconds(now - self._began), "dim")))
            else:
                lines.append(Text.assemble(("  ", ""), (seconds(now - self._run_started), "dim"),
                                           f"  run so far: {count_text(self.counts)}"))
            return Group(*lines)

    def _host_lines(self, step: _Step, frame: str, now: float) -> list[Text]:
        """A line per host of `step`: a spinner, the time so far and the last command while
        it runs, else its state and duration; below a failed host, why."""
        width = max((len(h) for h in step.hosts), default=0)
        lines = []
        for host in step.hosts.values():
            if host.state == "running":
                took = seconds(now - host.started) if host.started is not None else ""
                last = (f"  {host.notice}" if host.notice else
                        f"  $ {host.command}" if host.command else "")
                line = Text.assemble(HOST_INDENT, (frame, "cyan"), " ",
                                     f"{host.name:<{width}}  ", ("running ", "cyan"),
                                     f" {took}", (last, "dim"))
            else:
                mark, style = MARKS.get(host.state, ("?", ""))
                took = f" {seconds(host.duration)}" if host.duration is not None else ""
                line = Text.assemble(HOST_INDENT, (mark, style), " ", f"{host.name:<{width}}  ",
                                     (f"{host.state:<8}", style), took)
            lines += [self._fit(line), *host.detail]
        return lines
