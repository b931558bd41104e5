"""How the engine reports a host's failure: the `host-failed` event's fields, and the one
error a step's outcomes end in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hadeploy.errors import CommandFailed, StepFailed, host_reason
from hadeploy.outcome import HostOutcome

# Lines of a failed command's stderr that `host-failed` carries.
STDERR_TAIL = 20


def failure_fields(exc: BaseException, host: str) -> dict[str, Any]:
    """The fields of `host-failed` on `host` (the console shows them): the error in full and
    its reason without the host's name; for a failed command also the command as shown, its
    exit code and the last lines of its stderr."""
    fields: dict[str, Any] = {"error": str(exc), "reason": host_reason(exc, host)}
    if isinstance(exc, CommandFailed):
        fields |= {"command": exc.command, "exited": exc.exited,
                   "stderr": "\n".join(exc.stderr.strip().splitlines()[-STDERR_TAIL:])}
    return fields


def first_interruption(outcomes: Mapping[str, HostOutcome]) -> BaseException | None:
    """The error of the first host the operator's stop request interrupted, if any."""
    return next((o.error for o in outcomes.values() if o.state == "interrupted" and o.error),
                None)


def raise_failures(step_id: str, outcomes: Mapping[str, HostOutcome],
                   redact: Callable[[str], str]) -> None:
    """Raise the first interruption among `outcomes`, else `StepFailed` if a host failed."""
    interrupted = first_interruption(outcomes)
    if interrupted is not None:
        raise interrupted
    if any(o.failed for o in outcomes.values()):
        raise StepFailed(step_id, outcomes, redact)
