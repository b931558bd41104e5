"""The `hadeploy` console script and `python -m hadeploy`: one command of hadeploy/commands.py
per run, with the flags `invoke TASK` takes, parsed by argparse.

invoke is not loaded here: importing it costs every run ~50 ms of CPU before the first
connection (its `invoke.context` imports unittest.mock and asyncio, its vendored YAML reader
compiles a large regex), for parsing a handful of flags. A command line that does not parse
exits 2, as every refusal that touched no host.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from hadeploy import __version__
from hadeploy.commands import COMMANDS, Command

BINARY = "hadeploy"


class UsageError(Exception):
    """A command line that does not parse; the message says why."""


class _Parser(argparse.ArgumentParser):
    """argparse, raising instead of printing its own usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True)
class Argument:
    """One parameter of a command's function as it reads on a command line."""

    name: str  # the function's parameter
    kind: str  # "flag", "value", "repeated" or "positional"
    short: str  # "-d", or "" when another argument took the letter first
    help: str

    @property
    def long(self) -> str:
        """The option: `dry_run` is `--dry-run`."""
        return "--" + self.name.replace("_", "-")

    def shown(self) -> str:
        """How the help names it: `-d, --dry-run`, `-h STRING, --hosts=STRING`."""
        if self.kind == "flag":
            return f"{self.short}, {self.long}" if self.short else self.long
        value = f"{self.long}=STRING"
        return f"{self.short} STRING, {value}" if self.short else value


def arguments(command: Command) -> list[Argument]:
    """The command's arguments, read from its function's signature; each takes the first
    letter of its name as short flag unless an earlier one took it (invoke's rule)."""
    taken: set[str] = set()
    found = []
    for name, parameter in inspect.signature(command.function).parameters.items():
        kind = ("positional" if parameter.default is inspect.Parameter.empty
                else "repeated" if name in command.repeatable
                else "flag" if parameter.default is False else "value")
        short = "" if kind == "positional" or name[0] in taken else f"-{name[0]}"
        taken.add(name[0])
        found.append(Argument(name, kind, short, command.help.get(name, "")))
    return found


def parse(command: Command, argv: Sequence[str]) -> dict[str, object]:
    """The keyword arguments of `command`'s function from its part of the command line."""
    parser = _Parser(prog=f"{BINARY} {command.name}", add_help=False, allow_abbrev=False)
    for argument in arguments(command):
        if argument.kind == "positional":
            parser.add_argument(argument.name)
            continue
        names = [n for n in (argument.short, argument.long) if n]
        action = {"flag": "store_true", "repeated": "append", "value": "store"}[argument.kind]
        parser.add_argument(*names, dest=argument.name, action=action)
    return dict(vars(parser.parse_args(list(argv))))


def command_help(command: Command) -> str:
    """What `hadeploy COMMAND --help` prints: what it does, its usage, then its options."""
    found = arguments(command)
    positionals = "".join(f" {a.name.upper()}" for a in found if a.kind == "positional")
    options = sorted((a for a in found if a.kind != "positional"), key=lambda a: a.name)
    width = max((len(a.shown()) for a in options), default=0) + 4
    lines = [inspect.cleandoc(command.function.__doc__ or ""), "",
             f"Usage: {BINARY} {command.name} [--options]{positionals}", "", "Options:"]
    shown = [(a.shown(), a.help) for a in options]
    shown += [(a.name.upper(), a.help) for a in found if a.kind == "positional"]
    lines += columns(shown, width, max(30, 78 - width))
    return "\n".join(lines + (["", command.usage] if command.usage else [])) + "\n"


def listing() -> str:
    """The commands, one line each (`hadeploy --list`)."""
    rows = [(command.name, inspect.cleandoc(command.function.__doc__ or "").split("\n\n")[0])
            for command in COMMANDS.values()]
    return "\n".join(["Commands:", "", *columns(rows, 21, 56)]) + "\n"


def columns(rows: Sequence[tuple[str, str]], width: int, text_width: int) -> list[str]:
    """Two columns: each name padded to `width`, its text wrapped at `text_width` beside it."""
    lines = []
    for name, text in rows:
        wrapped = textwrap.wrap(" ".join(text.split()), text_width) or [""]
        lines.append(f"  {name:<{width}}{wrapped[0]}")
        lines += [f"  {'':<{width}}{more}" for more in wrapped[1:]]
    return lines


def overview() -> str:
    """What `hadeploy --help` prints."""
    return (f"Usage: {BINARY} COMMAND [--options]\n"
            f"       {BINARY} --help COMMAND | --list | --version\n\n"
            f"Each command takes the same flags as `invoke COMMAND` in hadeploy's repository.\n\n"
            f"{listing()}")


def run(argv: Sequence[str]) -> int:
    """Run the command line `argv` (without the program's name); return the exit code."""
    if not argv or argv[0] in ("-h", "--help"):
        if len(argv) > 1:
            return run([argv[1], "--help"])
        sys.stdout.write(overview())
        return 0
    if argv[0] in ("-l", "--list"):
        sys.stdout.write(listing())
        return 0
    if argv[0] in ("-V", "--version"):
        sys.stdout.write(f"{BINARY} {__version__}\n")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        return usage(f"no command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", None)
    if "--help" in argv[1:]:
        sys.stdout.write(command_help(command))
        return 0
    try:
        keywords = parse(command, argv[1:])
    except UsageError as exc:
        return usage(str(exc), command)
    return command.function(**keywords)


def usage(problem: str, command: Command | None) -> int:
    """A command line that does not parse: say why and how to list what does; exit 2."""
    hint = (f"usage: {BINARY} {command.name} [--options]; `{BINARY} --help {command.name}` "
            "lists them" if command else
            f"usage: {BINARY} COMMAND [--options]; `{BINARY} --list` lists the commands")
    sys.stderr.write(f"error: {problem}\n{hint}\n")
    return 2


def main() -> int:
    """Run `hadeploy COMMAND ...` (exits with the command's code, see hadeploy.commands)."""
    return run(sys.argv[1:])


def console() -> NoReturn:
    """The `hadeploy` command and `python -m hadeploy`: `main`, then the process ends at once
    with its code, stdout and stderr flushed first. What a run leaves is on disk by then
    (journals written atomically and synced, the event log flushed at every event, the
    connections closed); the interpreter's own tear-down of the modules and objects cost a
    no-op run ~30 ms. An exception still ends the usual way, with its traceback."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say there
            code = code or 1
    os._exit(code)
