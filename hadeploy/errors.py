"""The exceptions hadeploy raises, one tree rooted at `HadeployError`.

    HadeployError                 caught once at the edge (tasks/CLI), shown without traceback
    ├── InventoryError            the inventory file is missing, malformed or breaks a rule
    ├── CatalogError              the shipped service catalog is inconsistent (a bug)
    ├── TransportError            SSH could not carry a command (connect, auth, host key, drop)
    │   └── HostKeyError          unknown or changed host key: refused by policy
    ├── CommandFailed             a remote command ran and exited non-zero; holds its `Result`
    ├── StepFailed                a runbook step failed on one or more hosts; holds outcomes
    ├── JournalError              the journal is corrupt, locked, or belongs to another inventory
    └── Interrupted               the operator asked to stop; the journal is resumable

The development lab (the top-level `lab` package, not shipped) adds `LabError` below
`HadeployError`.

An error that happened on one host carries it in `host` and what went wrong there in
`reason`; its text is `"{host}: {reason}"`. Code that groups messages by host asks
`host_reason` rather than cutting the name back off the text. Errors keep raw data (a
command's stderr may quote a secret): whoever prints them masks secrets on the way out.

Every message says what happened, where (file/key or host/step/command) and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from hadeploy.outcome import HostOutcome

# Lines of a failed command's stderr its message quotes.
MESSAGE_STDERR_LINES = 8


class HadeployError(Exception):
    """Base of every error hadeploy reports to the operator.

    `host` is the host it happened on (None when it is not about one host) and `reason`
    the message without that host's name.
    """

    def __init__(self, reason: str = "", host: str | None = None) -> None:
        self.reason = reason
        self.host = host
        super().__init__(f"{host}: {reason}" if host is not None else reason)


def host_reason(exc: BaseException, host: str | None = None) -> str:
    """What went wrong, for a message already grouped under `host` (default: the error's
    own host): without the host's name when it happened there, the whole text otherwise."""
    if isinstance(exc, HadeployError) and exc.host is not None \
            and host in (None, exc.host):
        return exc.reason
    return str(exc)


class InventoryError(HadeployError):
    """The inventory cannot be used; `problems` lists every rule it breaks."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{path}: {count} problem{'s' if count != 1 else ''} found, nothing was run"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class CatalogError(HadeployError):
    """The shipped service catalog contradicts itself (a bug in hadeploy)."""


class TransportError(HadeployError):
    """SSH could not carry out a request on a host."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message, host=host)


class HostKeyError(TransportError):
    """The host's SSH key is unknown or has changed, and the policy refuses it."""


class CommandResult(Protocol):
    """What `CommandFailed` keeps of a command: `hadeploy.transport.base.Result`, whose
    `check` raises it (described here, not imported, so the two modules import one way)."""

    @property
    def host(self) -> str: ...
    @property
    def command(self) -> str: ...
    @property
    def exited(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


class CommandFailed(HadeployError):
    """A remote command exited non-zero; `result` is its `Result`, `command` the command as
    shown to the operator (plans and logs show a summary, never stdin)."""

    def __init__(self, result: CommandResult, shown: str | None = None) -> None:
        self.result = result
        self.command = shown or result.command
        tail = result.stderr.strip().splitlines()[-MESSAGE_STDERR_LINES:]
        text = f"command exited {result.exited}: {self.command}"
        text += "".join(f"\n    {line}" for line in tail)
        super().__init__(text, host=result.host)

    @property
    def exited(self) -> int:
        """The command's exit code."""
        return self.result.exited

    @property
    def stderr(self) -> str:
        """The command's stderr."""
        return self.result.stderr

    @property
    def stdout(self) -> str:
        """The command's stdout."""
        return self.result.stdout


def _unmasked(text: str) -> str:
    return text


class StepFailed(HadeployError):
    """A runbook step failed; `outcomes` maps each host it ran on to its `HostOutcome`.

    `redact` masks secrets in the text this error renders (its message and `reasons()`);
    the outcomes keep the original exceptions.
    """

    def __init__(self, step_id: str, outcomes: Mapping[str, HostOutcome],
                 redact: Callable[[str], str] = _unmasked) -> None:
        self.step_id = step_id
        self.outcomes = dict(outcomes)
        self.redact = redact
        lines = [f"step {step_id} failed on {', '.join(sorted(self.failures))}"]
        lines += [f"  {host}: {reason}" for host, reason in sorted(self.reasons().items())]
        super().__init__("\n".join(lines))

    @property
    def failures(self) -> dict[str, BaseException]:
        """Each failed host and the original exception seen there."""
        return {host: outcome.error for host, outcome in self.outcomes.items()
                if outcome.failed and outcome.error is not None}

    def reasons(self) -> dict[str, str]:
        """Each failed host and what went wrong there (without its name), secrets masked."""
        return {host: self.redact(host_reason(error, host))
                for host, error in self.failures.items()}


class JournalError(HadeployError):
    """The journal cannot be used as it is (corrupt, locked, or for another inventory)."""


class Interrupted(HadeployError):
    """The operator asked to stop (SIGINT/SIGTERM); the journal is resumable."""
