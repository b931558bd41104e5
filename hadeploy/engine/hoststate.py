"""The run's state on the hosts themselves, so that losing the workstation for good loses
nothing: another workstation with the same inventory resumes or rolls back from the hosts.

On every host of a run, under /var/lib/hadeploy (owner-only at every level):

    lock           one JSON line naming the run's owner (user@workstation, pid, phase, kind,
                   start time); its mtime is the heartbeat, set by the claim and refreshed
                   every HEARTBEAT_SECONDS by a loop on its own channel of the run's SSH
                   connection that ends when the connection does (its next write fails),
                   started HEARTBEAT_SECONDS after the claim (a shorter run, such as a
                   no-op, needs none: the lock goes stale only after STALE_SECONDS), and by
                   every change command
    runs/RUN.json  the host's own slice of run RUN's journal (every step, with only this
                   host's entries and facts), written ahead of each change command (so the
                   intent is on the host before the change is) and at the end of the run

The lock is taken in the run's first round trip (platform detection, `claim_script`):
created if absent, atomically; otherwise the holder is read back and `verdict` decides. A
lock whose owner is this workstation's own dead process (a run killed outright) is taken
over; one that has had no heartbeat for STALE_SECONDS may be taken over only with
`--break-lock`; any other refuses the run before anything changed, naming who holds it and
since when. A takeover swaps the lock only if it is still the one that was read.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from hadeploy import framing
from hadeploy.engine.group import on_hosts
from hadeploy.errors import HadeployError, JournalError
from hadeploy.hostdirs import HADEPLOY_HOME, private_dir
from hadeploy.journal import Journal
from hadeploy.platforms import DETECT_PROBE
from hadeploy.quoting import q
from hadeploy.transport.base import Transport

LOCK = f"{HADEPLOY_HOME}/lock"
RUNS = f"{HADEPLOY_HOME}/runs"
HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60
# Markers of the claim's output (after the platform's) and of the records it lists.
SECTION = "hoststate"
TAKEN, HELD, RECORD = "lock-taken", "lock-held", "record"


@dataclass(frozen=True)
class Owner:
    """Who runs: written in the lock, read back by whoever finds it there."""

    user: str
    workstation: str
    pid: int
    phase: str
    kind: str
    started: float

    def line(self) -> str:
        """The lock file's one line."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner a lock names, or None when its text is not one (cut off, edited)."""
        try:
            data = json.loads(text)
            return cls(str(data["user"]), str(data["workstation"]), int(data["pid"]),
                       str(data["phase"]), str(data["kind"]), float(data["started"]))
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        """`root@ws1 (pid 812, deploy lb) since 2026-12-02 12:50:03 UTC`."""
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return (f"{self.user}@{self.workstation} (pid {self.pid}, {self.kind} {self.phase}) "
                f"since {since}")

    def same_workstation(self, other: Owner) -> bool:
        """Whether `other` ran as the same user on the same workstation."""
        return (self.user, self.workstation) == (other.user, other.workstation)


def this_workstation(phase: str, kind: str) -> Owner:
    """The owner this process writes."""
    return Owner(getpass.getuser(), socket.gethostname(), os.getpid(), phase, kind,
                 round(time.time(), 3))


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this workstation."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the shell -------------------------------------------------------------------------------

def facts_script(owner: Owner | None, records_of: str | None = None) -> str:
    """The run's first round trip on a host: platform detection, then for a run holding its
    hosts (`owner`) the lock's claim (`claim_script`)."""
    return DETECT_PROBE + "\n" + (claim_script(owner, records_of) if owner else "")


def claim_script(owner: Owner, records_of: str | None = None) -> str:
    """Lines run after platform detection: take the lock if nobody holds it, else print the
    holder, its heartbeat's age (host clock) and its checksum; with `records_of` (a phase),
    also print every run record of that phase the host keeps."""
    records = ""
    if records_of is not None:
        # run ids end in -PHASE-KIND (journal.RunStore.new_run_id)
        records = (f"for f in {RUNS}/*-{records_of}-*.json; do [ -f \"$f\" ] || continue\n"
                   f"  echo {framing.tag(RECORD)}; cat \"$f\"\n"
                   "done\n")
    return (
        f"echo {framing.tag(SECTION)}\n"
        + private_dir(q(HADEPLOY_HOME))
        + f"lock={q(LOCK)}\n"
        f"if (umask 077; set -C; printf '%s\\n' {q(owner.line())} > \"$lock\") 2>/dev/null; "
        f"then echo {framing.tag(TAKEN)}\n"
        "else\n"
        f"  echo {framing.tag(HELD)} $(( $(date +%s) - $(stat -c %Y \"$lock\") )) "
        "$(sha256sum < \"$lock\" | cut -c 1-64) \"$(head -c 4096 \"$lock\" | head -n 1)\"\n"
        "fi\n"
        + records
    )


def takeover_script(owner: Owner, digest: str) -> str:
    """Replace the lock with ours only if it is still the one read (sha256 `digest`)."""
    return (
        f"lock={q(LOCK)}\n"
        f"if [ \"$(sha256sum < \"$lock\" | cut -c 1-64)\" = {q(digest)} ]; then\n"
        f"  (umask 077; printf '%s\\n' {q(owner.line())} > \"$lock.new\")\n"
        "  mv -f \"$lock.new\" \"$lock\"\n"
        f"  echo {framing.tag(TAKEN)}\n"
        "fi\n"
    )


def heartbeat_script(owner: Owner) -> str:
    """A loop refreshing the lock's mtime while the run's connection lives: its write to the
    channel fails once the connection is gone, and it never touches a lock not ours."""
    return (
        f": hadeploy-heartbeat; lock={q(LOCK)}; me={q(owner.line())}\n"
        f"while [ \"$(cat \"$lock\" 2>/dev/null)\" = \"$me\" ] && printf .; do\n"
        f"  touch -c \"$lock\"; sleep {HEARTBEAT_SECONDS}\n"
        "done\n"
    )


def record_write(run_id: str, text: str) -> str:
    """A command writing the host's slice `text` of run `run_id` atomically, owner-only."""
    path = q(f"{RUNS}/{run_id}.json")
    return ("{\n" + private_dir(q(RUNS))
            + f"(umask 077 && printf '%s\\n' {q(text)} > {path}.new) && "
            f"mv -f {path}.new {path}\n}}")


def record_script(run_id: str, text: str) -> str:
    """Lines ahead of a change command: the slice written (or the command refused, nothing
    changed) and the heartbeat refreshed."""
    refusal = q(f"cannot keep run {run_id}'s record in {RUNS} on this host; nothing was changed")
    return (f"{record_write(run_id, text)} || {{ echo {refusal} >&2; exit 1; }}\n"
            f"touch -c {q(LOCK)}\n")


def final_record(run_id: str, text: str, changed: bool) -> str:
    """The release's write of a run's last slice: where the run changed the host or the host
    already keeps a record of it; a failure here does not keep the lock."""
    path = q(f"{RUNS}/{run_id}.json")
    when = "true" if changed else f"[ -e {path} ]"
    return f"if {when}; then {record_write(run_id, text)} || true; fi\n"


def release_script(owner: Owner) -> str:
    """Remove the lock if it is still ours, and hadeploy's directory if nothing is left in
    it (a run that changed nothing leaves the host as it was)."""
    return (f"if [ \"$(cat {q(LOCK)} 2>/dev/null)\" = {q(owner.line())} ]; then "
            f"rm -f {q(LOCK)}; fi\nrmdir {q(HADEPLOY_HOME)} 2>/dev/null || true\n")


# -- reading and deciding --------------------------------------------------------------------

@dataclass(frozen=True)
class LockSeen:
    """What the claim found on one host."""

    taken: bool
    holder: Owner | None = None
    age: int = 0
    digest: str = ""
    records: tuple[dict[str, Any], ...] = ()


def split_detect(stdout: str) -> tuple[str, str]:
    """The platform detection's output, and the claim's."""
    marker = framing.tag(SECTION)
    head, _, tail = stdout.partition(f"{marker}\n")
    return head, tail


def parse_claim(stdout: str) -> LockSeen:
    """The claim's output (after `split_detect`) as a `LockSeen`."""
    taken = bool(framing.tagged_words(TAKEN, stdout))
    records = []
    for chunk in stdout.split(framing.tag(RECORD) + "\n")[1:]:
        try:
            data = json.loads(chunk.strip())
        except ValueError:
            continue  # a record cut off by a full disk: the others still count
        if isinstance(data, dict):
            records.append(data)
    held = next((line for line in stdout.splitlines()
                 if line.startswith(framing.tag(HELD) + " ")), None)
    if taken or held is None:
        return LockSeen(True, records=tuple(records))
    words = held.split(" ", 3)
    age = int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else 0
    return LockSeen(False, Owner.parse(words[3] if len(words) > 3 else ""), age,
                    words[2] if len(words) > 2 else "", tuple(records))


def verdict(seen: LockSeen, me: Owner, break_stale: bool,
            alive: Callable[[int], bool] = pid_alive) -> str | None:
    """None: the lock is ours or may be taken over; else why this run must not go on."""
    if seen.taken:
        return None
    holder = seen.holder
    if holder is not None and holder.same_workstation(me) and (
            holder.pid == me.pid or not alive(holder.pid)):
        return None  # this workstation's own run, dead (or this very process)
    stale = seen.age >= STALE_SECONDS
    if stale and break_stale:
        return None
    who = holder.describe() if holder else "an unreadable lock"
    beat = f"last heartbeat {seen.age} s ago"
    if stale:
        return (f"{LOCK} is held by {who}, {beat}: stale (no heartbeat for {STALE_SECONDS} s). "
                "If that run is gone for good (its workstation died), run again with "
                "--break-lock; nothing was changed")
    return (f"{LOCK} is held by {who}, {beat}: another hadeploy run is working on this host; "
            f"nothing was changed. Wait for it to finish; if its workstation is gone, its "
            f"lock goes stale {STALE_SECONDS} s after the last heartbeat, then run again with "
            "--break-lock")


# -- journals: slices and their merge --------------------------------------------------------

def host_slice(data: Mapping[str, Any], host: str) -> dict[str, Any]:
    """A journal's JSON with only `host`'s entries and facts (every step kept, for order)."""
    return {**data, "facts": {h: f for h, f in data.get("facts", {}).items() if h == host},
            "steps": [{**step, "hosts": {h: e for h, e in step["hosts"].items() if h == host}}
                      for step in data.get("steps", ())]}


def has_changes(data: Mapping[str, Any]) -> bool:
    """Whether a slice records any change on its host (something to undo)."""
    return any(entry.get("changes") for step in data.get("steps", ())
               for entry in step["hosts"].values())


def merge_slices(slices: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Journals (JSON, by run id) put together from hosts' slices: every host's entries,
    steps in the run's order; done only if every slice says so."""
    runs: dict[str, dict[str, Any]] = {}
    for piece in slices:
        run_id = str(piece.get("run_id"))
        merged = runs.get(run_id)
        if merged is None:
            runs[run_id] = json.loads(json.dumps(piece))
            continue
        merged["facts"].update(piece.get("facts", {}))
        known = {step["id"]: step for step in merged["steps"]}
        for step in piece.get("steps", ()):
            if step["id"] in known:
                known[step["id"]]["hosts"].update(step["hosts"])
            else:
                merged["steps"].append(json.loads(json.dumps(step)))
        if piece.get("status") != "done":
            merged["status"] = piece.get("status")
            merged["finished"] = None
        merged["rolled_back_by"] = merged.get("rolled_back_by") or piece.get("rolled_back_by")
    for merged in runs.values():
        if merged.get("status") == "running":
            merged["status"] = "interrupted"  # its workstation stopped writing mid-run
    return runs


# -- the engine's part -----------------------------------------------------------------------

class HostState:
    """A run's lock and records on its hosts, over the run's transport."""

    #: Seconds from the claim to the heartbeats' start (0: at once).
    heartbeat_after: float = HEARTBEAT_SECONDS

    def __init__(self, transport: Transport, owner: Owner, redact: Callable[[str], str],
                 break_stale: bool = False, limit: int = 32) -> None:
        self.transport = transport
        self.limit = limit  # hosts given back at once
        self.owner = owner
        self.redact = redact
        self.break_stale = break_stale
        self.held: list[str] = []
        self.records: dict[str, tuple[dict[str, Any], ...]] = {}
        self.journals: dict[str, Journal] = {}
        self._lock = threading.Lock()
        self._beats: threading.Timer | None = None

    def claim(self, outputs: Mapping[str, str], give_back: bool = False) -> None:
        """Decide from every host's claim output (see `verdict`); take stale or dead locks
        over; on any refusal give back what was taken and raise `JournalError`. With
        `give_back` (the round failed on another host), only give back what was taken."""
        refusals: dict[str, str] = {}
        # (no output: the claim did not run there, as with a scripted test transport)
        seen = {host: parse_claim(out) for host, out in outputs.items() if out}
        for host, lock in sorted(seen.items()):
            self.records[host] = lock.records
            if lock.taken:
                self.held.append(host)
        if give_back:
            self.release()
            return
        for host, lock in sorted(seen.items()):
            if lock.taken:
                continue
            why = verdict(lock, self.owner, self.break_stale)
            if why is None:
                result = self.transport.run(host, takeover_script(self.owner, lock.digest))
                if framing.tagged_words(TAKEN, result.stdout):
                    self.held.append(host)
                    continue
                why = f"{LOCK} changed while this run looked at it; nothing was changed"
            refusals[host] = why
        if refusals:
            self.release()
            raise JournalError("\n".join(f"{host}: {why}" for host, why in
                                         sorted(refusals.items())))
        held = list(self.held)
        self._stop_beats()
        if self.heartbeat_after <= 0:
            self._heartbeats(held)
            return
        self._beats = threading.Timer(self.heartbeat_after, self._heartbeats, (held,))
        self._beats.daemon = True
        self._beats.start()

    def _heartbeats(self, hosts: list[str]) -> None:
        """Start the heartbeat loop on every one of `hosts` at once; a host whose connection
        is gone keeps a lock that goes stale (its run's next command there fails anyway)."""
        heartbeat = heartbeat_script(self.owner)

        def keep(host: str) -> None:
            with contextlib.suppress(HadeployError):
                self.transport.keep(host, heartbeat)

        on_hosts(hosts, keep, self.limit)

    def _stop_beats(self) -> None:
        """No heartbeat starts from now on: the wait for them is cancelled, or, when it has
        just ended, their start is waited for (before the locks go back and the connections
        close)."""
        if self._beats is not None:
            self._beats.cancel()
            self._beats.join()
            self._beats = None

    def prefix(self, host: str, journal: Journal) -> str:
        """Lines to run ahead of a change command on `host`: the host's slice of `journal`."""
        if host not in self.held:
            return ""
        with self._lock:
            self.journals[journal.run_id] = journal
        text = self.redact(json.dumps(host_slice(journal.to_json(), host), sort_keys=True))
        return record_script(journal.run_id, text)

    def touch(self, journal: Journal) -> None:
        """Count `journal` among those whose final slices the release writes."""
        with self._lock:
            self.journals[journal.run_id] = journal

    def release(self) -> None:
        """Write the final slices (where the host keeps a record of the run or the run
        changed it), give the locks back, every host at once; best effort: an unreachable
        host keeps a lock that goes stale."""
        self._stop_beats()

        def give_back(host: str) -> bool:
            script = ""
            for journal in self.journals.values():
                data = host_slice(journal.to_json(), host)
                text = self.redact(json.dumps(data, sort_keys=True))
                script += final_record(journal.run_id, text, has_changes(data))
            try:
                self.transport.run(host, script + release_script(self.owner))
            except HadeployError:
                return False
            return True

        given = on_hosts(list(self.held), give_back, self.limit)
        self.held = [host for host in self.held if not given[host]]
