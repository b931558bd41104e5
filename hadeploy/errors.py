"""The exceptions hadeploy raises, one tree rooted at `HadeployError`.

    HadeployError                 caught once at the edge (tasks/CLI), shown without traceback
    ├── InventoryError            the inventory file is missing, malformed or breaks a rule
    ├── CatalogError              the shipped service catalog is inconsistent (a bug)
    ├── TransportError            SSH could not carry a command (connect, auth, host key, drop)
    │   └── HostKeyError          unknown or changed host key: refused by policy
    ├── CommandFailed             a remote command ran and exited non-zero
    ├── StepFailed                a runbook step failed on one or more hosts
    ├── JournalError              the journal is corrupt, locked, or belongs to another inventory
    └── Interrupted               the operator asked to stop; the journal is resumable

The development lab (the top-level `lab` package, not shipped) adds `LabError` below
`HadeployError`.

Every message says what happened, where (file/key or host/step/command) and how to fix it.
"""

from __future__ import annotations


class HadeployError(Exception):
    """Base of every error hadeploy reports to the operator."""


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
        self.host = host
        super().__init__(f"{host}: {message}")


class HostKeyError(TransportError):
    """The host's SSH key is unknown or has changed, and the policy refuses it."""


class CommandFailed(HadeployError):
    """A remote command exited non-zero; carries the command, exit code and stderr tail."""

    def __init__(self, host: str, command: str, exited: int, stderr: str, stdout: str = "") -> None:
        self.host = host
        self.command = command
        self.exited = exited
        self.stderr = stderr
        self.stdout = stdout
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        text = f"{host}: command exited {exited}: {command}"
        if tail:
            text += "\n" + "\n".join(f"    {line}" for line in tail.splitlines())
        super().__init__(text)


class StepFailed(HadeployError):
    """A runbook step failed; `failures` maps host name to the error seen there."""

    def __init__(self, step_id: str, failures: dict[str, BaseException]) -> None:
        self.step_id = step_id
        self.failures = dict(failures)
        lines = [f"step {step_id} failed on {', '.join(sorted(failures))}"]
        lines += [f"  {host}: {err}" for host, err in sorted(failures.items())]
        super().__init__("\n".join(lines))


class JournalError(HadeployError):
    """The journal cannot be used as it is (corrupt, locked, or for another inventory)."""


class Interrupted(HadeployError):
    """The operator asked to stop (SIGINT/SIGTERM); the journal is resumable."""
