"""The journal: one JSON file per run under `.hadeploy/` next to the inventory.

Written atomically (temp file, fsync, rename, fsync of the directory) after every
transition of a (step, host) pair, so whatever kills hadeploy — Ctrl-C, SIGKILL, a power
cut on the workstation — the file on disk is a complete, earlier state. It stores states,
what each operation changed (backup paths, packages installed, previous values) and never
file contents or secrets: the engine saves through a `JournalWriter`, which masks every
known secret in the text it writes.

    states:  pending -> running -> changed | ok | failed ; changed -> rolled-back
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hadeploy.errors import JournalError

FORMAT = 1
DONE_STATES = ("changed", "ok")
HOST_STATES = ("pending", "running", "changed", "ok", "failed", "rolled-back")


def state_dir_for(inventory_path: str) -> Path:
    """`.hadeploy/` beside the inventory file."""
    return Path(inventory_path).resolve().parent / ".hadeploy"


def now() -> float:
    """Wall-clock seconds (one place, so tests can reason about it)."""
    return round(time.time(), 3)


def make_private_dir(directory: Path) -> None:
    """Create `directory` and each missing parent with mode 0700 (`mkdir -p` would make the
    parents 0755 under the usual umask): journals name hosts, paths and backups, which
    only the operator should read."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for level in reversed(missing):
        level.mkdir(mode=0o700, exist_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    The temp file is owner-only from its creation (and made so again if a stale one of
    another mode was there), so the file keeps mode 0600 through every rename.
    """
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def live_changes(entry: HostEntry) -> list[dict[str, Any]]:
    """The changes of `entry` that still hold on the host (recorded, not rolled back)."""
    return [c for c in entry.changes if c.get("record") and not c.get("rolled_back")]


@dataclass
class HostEntry:
    """One host's progress through one step."""

    state: str = "pending"
    started: float | None = None
    finished: float | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class StepEntry:
    """One step of the run and every host it targets."""

    id: str
    title: str
    hosts: dict[str, HostEntry]

    @property
    def done(self) -> bool:
        """Whether every host finished this step."""
        return all(h.state in DONE_STATES for h in self.hosts.values())


@dataclass
class Journal:
    """A run's checkpoints; `save()` after every change."""

    path: Path
    run_id: str
    phase: str
    kind: str
    inventory: str
    fingerprint: str
    started: float
    status: str = "running"
    finished: float | None = None
    steps: list[StepEntry] = field(default_factory=list)
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    rolled_back_by: str | None = None

    def step(self, step_id: str) -> StepEntry:
        """The entry of step `step_id`."""
        for entry in self.steps:
            if entry.id == step_id:
                return entry
        raise KeyError(step_id)

    def ensure_step(self, step_id: str, title: str, hosts: list[str]) -> StepEntry:
        """The entry of `step_id`, created pending for `hosts` when new."""
        try:
            entry = self.step(step_id)
        except KeyError:
            entry = StepEntry(step_id, title, {h: HostEntry() for h in hosts})
            self.steps.append(entry)
        for host in hosts:
            entry.hosts.setdefault(host, HostEntry())
        return entry

    def changed_steps(self, host: str) -> frozenset[str]:
        """Ids of steps that changed `host` in this run (changes rolled back do not count)."""
        return frozenset(
            s.id for s in self.steps
            if host in s.hosts
            and (s.hosts[host].state == "changed" or live_changes(s.hosts[host]))
        )

    def to_json(self) -> dict[str, Any]:
        """The journal as plain JSON data."""
        return {
            "format": FORMAT, "run_id": self.run_id, "phase": self.phase, "kind": self.kind,
            "inventory": self.inventory, "fingerprint": self.fingerprint,
            "started": self.started, "finished": self.finished, "status": self.status,
            "rolled_back_by": self.rolled_back_by, "facts": self.facts,
            "steps": [
                {"id": s.id, "title": s.title, "hosts": {
                    name: {"state": h.state, "started": h.started, "finished": h.finished,
                           "changes": h.changes, "error": h.error}
                    for name, h in s.hosts.items()}}
                for s in self.steps
            ],
        }

    def save(self, redact: Callable[[str], str] | None = None) -> None:
        """Write the journal atomically (mode 0600), through `redact` when given."""
        text = json.dumps(self.to_json(), indent=1, sort_keys=True)
        write_atomic(self.path, ((redact or str)(text) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> Journal:
        """Read a journal, or raise `JournalError` saying what is wrong and what to do."""
        advice = (f"nothing was run. Move it aside (mv {path} {path}.broken) to start a fresh "
                  "run; the hosts keep their state and a fresh run re-checks every step")
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise JournalError(f"journal {path} cannot be read ({exc}); {advice}") from exc
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"format {data['format']} is not {FORMAT}")
            journal = cls(
                path=path, run_id=str(data["run_id"]), phase=str(data["phase"]),
                kind=str(data["kind"]), inventory=str(data["inventory"]),
                fingerprint=str(data["fingerprint"]), started=float(data["started"]),
                status=str(data["status"]), finished=data["finished"],
                facts=dict(data["facts"]), rolled_back_by=data.get("rolled_back_by"),
            )
            for s in data["steps"]:
                hosts = {}
                for name, h in s["hosts"].items():
                    if h["state"] not in HOST_STATES:
                        raise ValueError(f"unknown state {h['state']!r}")
                    if not isinstance(h["changes"], list):
                        raise ValueError("changes must be a list")
                    for c in h["changes"]:
                        # rollback works from these alone: check their shape now, not midway
                        if not isinstance(c, dict) or not isinstance(c.get("op"), str) \
                                or not isinstance(c.get("record", {}), dict):
                            raise ValueError(f"malformed change {c!r} in step {s['id']}")
                    hosts[name] = HostEntry(h["state"], h["started"], h["finished"],
                                            h["changes"], h["error"])
                journal.steps.append(StepEntry(str(s["id"]), str(s["title"]), hosts))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JournalError(f"journal {path} is damaged ({exc!r}); {advice}") from exc
        return journal


class JournalWriter:
    """Saves journals for the engine's parallel hosts, with secrets masked in the file.

    Group commit: while one thread writes a journal, the others that changed it wait and
    are covered by the next write, which serialises their changes too. Twelve hosts
    finishing a step at once cost a few writes (each with two fsyncs), not twelve.
    """

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact
        self._write = threading.Lock()
        self._turn = threading.Condition()
        self._tickets: dict[int, tuple[int, int, bool]] = {}  # per journal: asked, written, busy

    def save(self, journal: Journal | None) -> None:
        """Write `journal` (None: nothing); on return the file holds every change made
        before the call."""
        if journal is None:
            return
        key = id(journal)
        with self._turn:
            asked, written, busy = self._tickets.get(key, (0, 0, False))
            ticket = asked + 1
            self._tickets[key] = (ticket, written, busy)
            while True:
                asked, written, busy = self._tickets[key]
                if written >= ticket:
                    return
                if not busy:
                    break
                self._turn.wait()
            self._tickets[key] = (asked, written, True)
            covered = asked  # this write serialises every change ticketed so far
        done = False
        try:
            with self._write:
                journal.save(self.redact)
            done = True
        finally:
            with self._turn:
                asked, written, _ = self._tickets[key]
                self._tickets[key] = (asked, max(written, covered) if done else written, False)
                self._turn.notify_all()


@dataclass(frozen=True)
class RunSummary:
    """A journal's few fields that say which runs matter (`RunStore.summaries`)."""

    path: Path
    run_id: str
    phase: str
    kind: str
    status: str
    rolled_back_by: str | None


class RunStore:
    """The state directory: journals of every run and the lock."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.runs = state_dir / "runs"
        self._lock_fd: int | None = None
        # (file name, inode, mtime ns, size) -> what `summaries` tells of it (a journal is
        # replaced by a rename: a new inode): a run asks several times, and every journal of
        # the state directory was read each time
        self._summaries: dict[tuple[str, int, int, int], RunSummary] = {}

    def new_run_id(self, phase: str, kind: str) -> str:
        """A sortable, unique id such as 20261121-070501-123-lb-deploy."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        millis = int((time.time() % 1) * 1000)
        return f"{stamp}-{millis:03d}-{phase}-{kind}"

    def journal_path(self, run_id: str) -> Path:
        """Where run `run_id`'s journal lives."""
        return self.runs / f"{run_id}.json"

    def all(self) -> list[Journal]:
        """Every journal, oldest first."""
        if not self.runs.is_dir():
            return []
        return [Journal.load(p) for p in sorted(self.runs.glob("*.json"))]

    def summaries(self) -> list[RunSummary]:
        """What decides which runs matter (phase, kind, status, undone), oldest first; each
        journal is read once per process while its file stays as it was."""
        if not self.runs.is_dir():
            return []
        found = []
        for path in sorted(self.runs.glob("*.json")):
            stat = path.stat()
            key = (path.name, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            summary = self._summaries.get(key)
            if summary is None:
                j = Journal.load(path)
                summary = RunSummary(path, j.run_id, j.phase, j.kind, j.status,
                                     j.rolled_back_by)
                self._summaries[key] = summary
            found.append(summary)
        return found

    def latest(self, phase: str, kind: str = "deploy") -> Journal | None:
        """The newest journal of `phase` and `kind`."""
        found = [s for s in self.summaries() if s.phase == phase and s.kind == kind]
        return Journal.load(found[-1].path) if found else None

    def lock(self) -> None:
        """Take the inventory's lock or raise `JournalError` naming the holder.

        The state directory is made owner-only (0700), also when it already existed wider.
        """
        make_private_dir(self.dir)
        if self.dir.stat().st_mode & 0o077:
            self.dir.chmod(0o700)
        path = self.dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalError(
                f"another hadeploy run holds {path} ({holder}); nothing was touched. Wait for "
                "it to finish, or check that it is gone; the lock is released when it exits"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (also released by the kernel if the process dies)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
