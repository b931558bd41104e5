"""Processes of the lab: start them, recognise them again by PID, stop them safely.

The lab never stops anything by name (in the root namespace `pidof haproxy` lists the
daemons of every simulated host, and other users' processes too). Every long-lived process
it starts is recorded as a `ProcRef`: PID, kernel start time and program name. A PID is only
signalled while all three still match, so a recycled PID is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError

#: Environment for every command the lab runs on the workstation's behalf or inside a host:
#: nothing of the caller's (pyenv shims, virtualenvs, proxies) leaks into the hosts.
CLEAN_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
}

#: Environment variable tagging the long-lived processes of one lab (value: its state dir).
MARKER_VAR = "HADEPLOY_LAB"
#: The programs the lab itself starts long-lived (core, spawners, inits and their child).
LAB_PROGRAMS = frozenset({"nsenter", "unshare", "tini", "sleep"})

# Children started by this Python process, so they are reaped (no zombies) once they end.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcRef:
    """A process recorded by the lab: PID, start time (clock ticks since boot) and program."""

    pid: int
    start: int
    program: str

    def to_json(self) -> dict[str, Any]:
        """The form stored in lab.json."""
        return {"pid": self.pid, "start": self.start, "program": self.program}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcRef:
        """Read back what `to_json` wrote."""
        return cls(pid=int(data["pid"]), start=int(data["start"]), program=str(data["program"]))


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the PID does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def _program(pid: int) -> str | None:
    """Base name of argv[0] of a process, or None if it is gone."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return Path(argv0.decode(errors="replace")).name


def ref_of(pid: int, program: str) -> ProcRef:
    """Record a running process; fails if it is not running `program`."""
    fields = _stat_fields(pid)
    if fields is None or _program(pid) != program:
        raise LabError(f"process {pid} is not a running {program}")
    return ProcRef(pid=pid, start=int(fields[19]), program=program)


def is_alive(ref: ProcRef) -> bool:
    """True while the recorded process still runs (same PID, start time and program)."""
    fields = _stat_fields(ref.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == ref.start and _program(ref.pid) == ref.program


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def spawn(argv: Sequence[str], log: Path, program: str, marker: str) -> ProcRef:
    """Start a long-lived process detached from our terminal, output appended to `log`.

    It gets its own session so Ctrl-C in the caller's terminal does not reach the hosts,
    and no pipe of ours, so it can outlive the command that started the lab. Its
    environment carries `HADEPLOY_LAB=marker`, so `sweep(marker)` finds it even if the
    lab died before recording it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
                env={**CLEAN_ENV, MARKER_VAR: marker},
            )
        except OSError as err:
            raise LabError(f"cannot start {argv[0]}: {err}") from err
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(LabError):
            return ref_of(proc.pid, program)
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    tail = _tail(log)
    raise LabError(f"{' '.join(argv)} did not start (exit {proc.poll()}){tail}")


def find_child(parent: ProcRef, program: str, timeout: float = 5.0) -> ProcRef:
    """Wait for `parent` to have a child running `program` and record it.

    Used to learn the root-namespace PID of a host's init, which `unshare --fork` starts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _parent(int(entry.name)) == parent.pid:
                with contextlib.suppress(LabError):
                    return ref_of(int(entry.name), program)
        if not is_alive(parent):
            break
        time.sleep(0.002)
    raise LabError(f"{parent.program} (pid {parent.pid}) did not start {program}")


def _wait_gone(ref: ProcRef, until: float) -> bool:
    """Wait until `ref` has exited (and, if it is our child, reap it); False at `until`."""
    child = _CHILDREN.get(ref.pid)
    while True:
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(ref.pid, None)
            return True
        if child is None and not is_alive(ref):
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(0.005)


def stop(ref: ProcRef | None, timeout: float = 10.0, grace: float = 0.0) -> None:
    """SIGKILL a recorded process if it is still the one recorded, and wait until it is gone.

    With `grace`, the process first gets that long to exit by itself (a spawner whose child
    just died needs the moment to reap it). Killing a host's init (PID 1 of its PID
    namespace) makes the kernel kill every process of that host. A process that is our own
    child is reaped so it leaves no zombie.
    """
    if ref is None:
        return
    if grace and _wait_gone(ref, time.monotonic() + grace):
        return
    if is_alive(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
    if not _wait_gone(ref, time.monotonic() + timeout):
        raise LabError(f"{ref.program} (pid {ref.pid}) did not exit within {timeout:.0f} s")


def sweep(marker: str, timeout: float = 10.0) -> list[int]:
    """Kill what is left of a lab whose records are incomplete (it died while starting).

    Only processes carrying `HADEPLOY_LAB=marker` in their environment and running one of
    the lab's own programs are killed; returns their PIDs.
    """
    tag = f"{MARKER_VAR}={marker}".encode()
    found: list[ProcRef] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        program = _program(int(entry.name))
        if tag in environ and program in LAB_PROGRAMS:
            with contextlib.suppress(LabError):
                found.append(ref_of(int(entry.name), program))
    for ref in found:
        stop(ref, timeout)
    return [ref.pid for ref in found]


def run(
    argv: Sequence[str],
    *,
    what: str,
    input: str | None = None,
    check: bool = True,
    timeout: float | None = 300,
    cwd: str | Path = "/",
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command of the lab's own machinery; failure becomes a `LabError` saying `what`."""
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=dict(env if env is not None else CLEAN_ENV),
            check=False,
        )
    except FileNotFoundError as err:
        raise LabError(f"{what}: {argv[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise LabError(f"{what}: {' '.join(argv)} took more than {timeout} s") from err
    if check and result.returncode != 0:
        detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        raise LabError(f"{what}: {' '.join(argv[:6])}… exited {result.returncode}\n{detail}")
    return result


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()[-8:]
    except FileNotFoundError:
        return ""
    return ("\n" + "\n".join(lines)) if lines else ""

