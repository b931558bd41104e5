"""The operator's commands (hadeploy/commands.py) as invoke tasks: `invoke deploy-lb` in the
repository, beside the lab's tasks. The `hadeploy` command line does not load invoke at all
(hadeploy/cli.py); both take the same flags, read from each command's signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task

from hadeploy import commands
from hadeploy.commands import COMMANDS, Command


def guard(action: Callable[[], int]) -> None:
    """Run `action` as a task: a hadeploy error is shown, and a non-zero code exits."""
    code = commands.guard(action)
    if code:
        raise Exit(code=code)


def as_task(command: Command) -> Task[Any]:
    """`command` as an invoke task: its function's signature behind invoke's context."""
    function = command.function

    def body(c: Context, **arguments: Any) -> None:
        code = function(**arguments)
        if code:
            raise Exit(code=code)

    signature = inspect.signature(function)
    context = inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    body.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[context, *signature.parameters.values()])
    body.__name__ = function.__name__
    body.__doc__ = function.__doc__
    return Task(body, help=dict(command.help), iterable=list(command.repeatable))


def operator_collection() -> Collection:
    """A new collection of the operator's tasks (callers may add their own to it)."""
    return Collection(*(as_task(command) for command in COMMANDS.values()))
