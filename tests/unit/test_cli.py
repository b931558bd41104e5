"""The `hadeploy` command line (hadeploy/cli.py, argparse) and `invoke TASK` (hadeploy/tasks.py)
take the same flags: both are read from the functions of hadeploy/commands.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from invoke.parser import Parser
from invoke.parser.context import ParserContext

from hadeploy import __version__
from hadeploy.cli import arguments, command_help, parse, run
from hadeploy.commands import COMMANDS
from hadeploy.tasks import as_task
from tests.unit.examples import ROOT


def invoke_parse(name: str, argv: list[str]) -> dict[str, object]:
    """The keyword arguments invoke's own parser gives the task for `invoke NAME ARGV`."""
    task = as_task(COMMANDS[name])
    context = ParserContext(name=name, args=task.get_arguments())
    parsed = Parser(contexts=[context]).parse_argv([name, *argv])
    return {arg.name: arg.value for arg in parsed[0].args.values()}


COMMAND_LINES = [
    ("deploy-lb", ["--hosts", "x.toml", "--dry-run"]),
    ("deploy-lb", ["-h", "x.toml", "-y", "--json", "--break-lock", "-r"]),
    ("deploy-controllers", ["--service", "glance", "-s", "nova", "--hosts=x.toml", "-o"]),
    ("restart", ["--service", "keystone", "--yes"]),
    ("rollback", ["--phase", "controllers", "-y"]),
    ("render", ["keepalived", "--node", "lb2", "-h", "x.toml"]),
    ("render", ["--hosts", "x.toml", "haproxy"]),
    ("status", []),
    ("verify", ["--json"]),
]


@pytest.mark.parametrize(("name", "argv"), COMMAND_LINES)
def test_hadeploy_parses_every_command_line_as_invoke_does(name: str, argv: list[str]) -> None:
    ours = parse(COMMANDS[name], argv)
    theirs = invoke_parse(name, argv)
    # invoke leaves an unused repeatable option as []: the function reads both as "none"
    assert {k: v or None for k, v in ours.items()} == {k: v or None for k, v in theirs.items()}


def test_every_command_shows_each_of_its_flags_in_its_help() -> None:
    for command in COMMANDS.values():
        text = command_help(command)
        assert text.startswith((command.function.__doc__ or "").split("\n")[0])
        for argument in arguments(command):
            shown = argument.long if argument.kind != "positional" else argument.name.upper()
            assert shown in text, (command.name, shown)
            assert argument.help and argument.help.split()[0] in text


def test_short_flags_are_invokes() -> None:
    """Each flag's short form is the one invoke gives it, so scripts work under both."""
    for command in COMMANDS.values():
        task_args = {a.name: a for a in as_task(command).get_arguments()}
        for argument in arguments(command):
            if argument.kind == "positional":
                continue
            invoke_names = task_args[argument.name].names
            short = [n for n in invoke_names if len(n) == 1]
            assert ([f"-{s}" for s in short] or [""]) == [argument.short], argument


@pytest.mark.parametrize(("argv", "problem"), [
    (["deploy-lb", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["no-such-command"], "no command 'no-such-command'; choose one of deploy-lb"),
    (["rollback", "--phase"], "argument -p/--phase: expected one argument"),
    (["render"], "the following arguments are required: what"),
    (["--dry-run"], "no command '--dry-run'"),
])
def test_a_command_line_that_does_not_parse_says_why_and_exits_2(
        argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {problem}"), err
    assert "usage: hadeploy" in err


def test_help_list_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help", "deploy-lb"]) == 0
    assert "--break-lock" in capsys.readouterr().out
    assert run(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hadeploy 0.")
    assert run([]) == 0
    assert "Usage: hadeploy COMMAND" in capsys.readouterr().out


def test_the_console_script_never_imports_invoke(tmp_path: Path) -> None:
    """The same command through the installed `hadeploy` script's entry (`console`, which
    ends the process at once): invoke stays unloaded, the output is whole, the code kept."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hadeploy", "--version"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout) == (0, f"hadeploy {__version__}\n")
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
    assert "hadeploy.cli" in imported  # the check sees the imports
    assert not [m for m in imported if m.split(".")[0] == "invoke"]
    failed = subprocess.run([sys.executable, "-m", "hadeploy", "no-such-command"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(ROOT)})
    assert failed.returncode == 2 and "no-such-command" in failed.stderr
