"""What the operator sees: step lines, plans with diffs, failures with the way forward.

Only this module, hadeploy.live (the live progress drawn on a terminal),
hadeploy.verify_console, hadeploy.status and tasks.py deal with presentation. Output is
plain text when stdout is not a terminal or NO_COLOR is set, so logs and CI stay readable:
`ProgressPrinter` prints those plain lines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.control import strip_control_codes
from rich.markup import escape
from rich.text import Text

from hadeploy.engine import PlanItem
from hadeploy.events import Event
from hadeploy.redact import Redactor

STATE_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red",
               "rolled-back": "magenta", "skipped": "dim"}


def make_console(stream: TextIO | None = None) -> Console:
    """A rich console that falls back to plain text off a terminal or with NO_COLOR."""
    stream = stream or sys.stdout
    plain = not stream.isatty() or "NO_COLOR" in os.environ
    return Console(file=stream, no_color=plain, highlight=False, soft_wrap=True,
                   force_terminal=None if not plain else False, width=None if not plain else 120)


class EventLog:
    """Appends every event as a JSON line to the state directory's log (mode 0600)."""

    def __init__(self, path: Path, redact: Redactor, echo: TextIO | None = None) -> None:
        self.path = path
        self.redact = redact
        self.echo = echo
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # a log left wider by hand (or an old version) is tightened
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        line = self.redact(json.dumps(event.to_json(), sort_keys=True))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if self.echo is not None:
                self.echo.write(line + "\n")
                self.echo.flush()

    def close(self) -> None:
        """Close the log file."""
        self._file.close()


class ProgressPrinter:
    """Prints one line per step and per host as events arrive, with running counts."""

    def __init__(self, console: Console, total_steps: int) -> None:
        self.console = console
        self.total = total_steps
        self.index = 0
        self.counts = {"changed": 0, "ok": 0, "failed": 0}
        self.rolled_back = 0  # host-steps a rollback undid
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._show(event)

    def __enter__(self) -> ProgressPrinter:
        """Nothing to set up: lines are printed as events arrive (see hadeploy.live.Printer)."""
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def _show(self, event: Event) -> None:
        c, d = self.console, event.data
        if event.kind == "run-started" and d.get("steps"):
            self.total = d["steps"]  # a deploy's runbook is built once its hosts are known
        if event.kind in ("step-started", "step-skipped"):
            self.index += 1
            note = "  [dim](done earlier in this run)[/dim]" if event.kind == "step-skipped" else ""
            c.print(f"[bold][{self.index}/{self.total}] {escape(event.step or '')}[/bold]  "
                    f"{escape(d.get('title', ''))}{note}")
        elif event.kind.startswith("host-") and event.kind != "host-started":
            state = event.kind.removeprefix("host-")
            if state in self.counts:
                self.counts[state] += 1
            elif state == "rolled-back":
                self.rolled_back += 1
            style = STATE_STYLE.get(state, "")
            extra = f" {d['duration']:.2f}s" if "duration" in d else ""
            c.print(f"      {escape(event.host or ''):<16} [{style}]{state}[/{style}]{extra}")
            if state == "failed":
                for line in str(d.get("error", "")).splitlines()[:12]:
                    c.print(f"        [red]{escape(line)}[/red]")
        elif event.kind == "notice":
            c.print(f"      {escape(event.host or ''):<16} [yellow]{escape(d.get('text', ''))}"
                    "[/yellow]")
        elif event.kind == "facts":
            c.print(f"      {escape(event.host or ''):<16} [dim]{d.get('platform') or '?'} "
                    f"({d.get('init')})[/dim]")

    def summary(self) -> str:
        """`N changed, M ok, F failed` for the closing line."""
        return ", ".join(f"{n} {k}" for k, n in self.counts.items())


# One printed line of a plan: (text, rich style) parts, style "" for none. Built as parts, not
# markup, so text shows as it is (no escaping, no `:name:` emoji codes), and cheap to write.
PlanLine = tuple[tuple[str, str], ...]
PRINT_CHUNK = 2000  # plan lines per rich print on a styled console


def plan_lines(items: list[PlanItem], offline: bool) -> Iterator[PlanLine]:
    """The lines of a plan, one at a time: steps, per-host commands and diffs."""
    current = None
    for item in items:
        if item.step.id != current:
            current = item.step.id
            yield (("", ""),)
            yield ((item.step.id, "bold"), (f"  {item.step.title}", ""))
        if item.error:
            yield ((f"  {item.host}: ", ""), (f"cannot probe: {item.error}", "red"))
            continue
        if not item.pending:
            yield ((f"  {item.host}: ", ""), ("already done", "green"))
            continue
        yield ((f"  {item.host}:", ""),)
        if offline and item.step.read_only:
            for op, _, _ in item.pending:
                yield (("    ", ""), (f"? {op.title()}", "cyan"), (" (checked at run time)", ""))
            continue
        for op, commands, preview in item.pending:
            yield (("    ", ""), (f"~ {op.title()}", "yellow"))
            for command in commands:
                for line in command.shown().splitlines():
                    yield ((f"      $ {line}", ""),)
            for line in preview.splitlines():
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
                yield (("      ", ""), (line, style))


def print_lines(console: Console, lines: Iterable[PlanLine]) -> None:
    """Print `lines` as rich prints each as a `Text`, in far fewer calls.

    A 200-host plan is ~37,000 lines; one `console.print` each took seconds. On a console
    that writes no styles (not a terminal, or NO_COLOR) the text is written directly, after
    the control-code stripping rich does; a line with a tab goes through rich, which expands
    tabs by cell width. A styled console gets the lines in a few large prints.
    """
    lines = iter(lines)
    if console.color_system is None and not (console.is_terminal or console.record
                                             or console.quiet):
        while chunk := list(islice(lines, PRINT_CHUNK)):
            out: list[str] = []
            for parts in chunk:
                text = strip_control_codes("".join(piece for piece, _ in parts))
                if "\t" not in text:
                    out.append(text + "\n")
                    continue
                console.file.write("".join(out))
                out.clear()
                console.print(Text.assemble(*parts))
            console.file.write("".join(out))
        console.file.flush()
        return
    while chunk := list(islice(lines, PRINT_CHUNK)):
        console.print(Text("\n").join(Text.assemble(*parts) for parts in chunk))


def print_plan(console: Console, items: list[PlanItem], offline: bool) -> tuple[int, int]:
    """Print a plan (steps, per-host commands and diffs); return (to change, already done)."""
    print_lines(console, plan_lines(items, offline))
    to_change = sum(1 if item.error else len(item.pending) for item in items)
    done = sum(len(item.done) for item in items if not item.error)
    if offline:
        console.print(f"\nPlan (offline, nothing probed): {to_change} operations to check")
    else:
        console.print(f"\nPlan: {to_change} to change, {done} already done")
    return to_change, done
