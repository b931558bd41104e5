"""The run's lock and records on the hosts (hadeploy/engine/hoststate.py): the generated
shell runs under /bin/sh with hadeploy's home moved into a temporary directory; the engine's
use of it runs over the fake transport."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy.engine import Engine
from hadeploy.engine.hoststate import (
    HEARTBEAT_SECONDS,
    STALE_SECONDS,
    HostState,
    LockSeen,
    Owner,
    claim_script,
    heartbeat_script,
    host_slice,
    merge_slices,
    parse_claim,
    record_script,
    release_script,
    split_detect,
    takeover_script,
    verdict,
)
from hadeploy.errors import JournalError, TransportError
from hadeploy.facts import Fact, Probe
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, now
from hadeploy.ops.base import HADEPLOY_HOME, Command, HostContext, Operation
from hadeploy.redact import Redactor
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeTransport

ME = Owner("root", "ws1", 4242, "lb", "deploy", 1_764_680_000.0)
OTHER = Owner("ops", "ws2", 99, "lb", "deploy", 1_764_679_000.0)


def run(script: str, home: Path) -> str:
    result = subprocess.run(["/bin/sh", "-c", script.replace(HADEPLOY_HOME, str(home))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_first_claim_takes_the_lock_and_the_next_one_reads_who_holds_it(
        tmp_path: Path) -> None:
    home = tmp_path / "hadeploy"
    assert parse_claim(run(claim_script(ME), home)) == LockSeen(True)
    assert (home / "lock").stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    seen = parse_claim(run(claim_script(OTHER), home))
    assert not seen.taken and seen.holder == ME and 0 <= seen.age < 5
    os.utime(home / "lock", (1, 1))  # no heartbeat for a long time
    assert parse_claim(run(claim_script(OTHER), home)).age > 1000


def test_who_may_go_on() -> None:
    held = LockSeen(False, ME, 3, "d")
    refusal = verdict(held, OTHER, break_stale=True, alive=lambda pid: True)
    assert refusal is not None
    assert "held by root@ws1 (pid 4242, deploy lb) since 2025-12-02 12:53:20 UTC" in refusal
    assert "last heartbeat 3 s ago" in refusal and "nothing was changed" in refusal
    stale = replace(held, age=600)
    told = verdict(stale, OTHER, break_stale=False, alive=lambda pid: True)
    assert told is not None and "stale" in told and "--break-lock" in told
    assert verdict(stale, OTHER, break_stale=True, alive=lambda pid: True) is None
    # this workstation's own run, killed outright: taken over at once
    me_again = replace(ME, pid=4243)
    assert verdict(held, me_again, break_stale=False, alive=lambda pid: False) is None
    assert verdict(held, me_again, break_stale=False, alive=lambda pid: True) is not None
    assert verdict(LockSeen(False, None, 5, "d"), OTHER, False) is not None


def test_a_takeover_swaps_only_the_lock_it_read_and_a_release_only_its_own(
        tmp_path: Path) -> None:
    home = tmp_path / "hadeploy"
    run(claim_script(OTHER), home)
    seen = parse_claim(run(claim_script(ME), home))
    assert run(takeover_script(ME, "0" * 64), home) == ""  # it changed since: left alone
    assert Owner.parse((home / "lock").read_text()) == OTHER
    assert "@@lock-taken" in run(takeover_script(ME, seen.digest), home)
    assert Owner.parse((home / "lock").read_text()) == ME
    run(release_script(OTHER), home)
    assert (home / "lock").exists()
    run(release_script(ME), home)
    assert not home.exists()  # nothing else was there: the host is as it was


def test_the_heartbeat_ends_when_nobody_reads_it(tmp_path: Path) -> None:
    home = tmp_path / "hadeploy"
    run(claim_script(ME), home)
    script = heartbeat_script(ME).replace(HADEPLOY_HOME, str(home))
    loop = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE)
    assert loop.stdout is not None
    assert loop.stdout.read(1) == b"."
    loop.stdout.close()  # the connection is gone
    assert loop.wait(timeout=30) != 0


def journal(tmp_path: Path) -> Journal:
    log = Journal(tmp_path / "run.json", "20261202-125000-000-lb-deploy", "lb", "deploy",
                  "hosts.toml", "fp", now())
    for step in ("lb.packages", "lb.sysctl"):
        entry = log.ensure_step(step, step, ["lb1", "lb2"])
        for host in ("lb1", "lb2"):
            entry.hosts[host].state = "changed"
            entry.hosts[host].changes.append(
                {"op": "x", "title": "x", "record": {"kind": "sysctl", "key": step,
                                                    "previous": host}})
    log.facts = {"lb1": {"platform": "debian"}, "lb2": {"platform": "debian"}}
    return log


def test_each_host_keeps_its_own_slice_and_the_slices_make_the_journal_again(
        tmp_path: Path) -> None:
    whole = journal(tmp_path)
    data = whole.to_json()
    homes = {h: tmp_path / h for h in ("lb1", "lb2")}
    for host, home in homes.items():
        run(record_script(whole.run_id, json.dumps(host_slice(data, host))), home)
        kept = home / "runs" / f"{whole.run_id}.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert (home / "runs").stat().st_mode & 0o777 == 0o700
    read = {h: parse_claim(split_detect(run(claim_script(ME, "lb"), home))[1]).records
            for h, home in homes.items()}
    assert [r["steps"][0]["hosts"].keys() for r in read["lb1"]] == [{"lb1": 0}.keys()]
    assert not parse_claim(split_detect(run(claim_script(ME, "controllers"),
                                            homes["lb1"]))[1]).records
    merged = merge_slices([*read["lb1"], *read["lb2"]])[whole.run_id]
    assert merged["steps"] == data["steps"] and merged["facts"] == data["facts"]
    assert merged["status"] == "interrupted"  # it was running when the records were written


NODES = {h: Node(h, IPv4Address(f"198.18.0.{n}")) for n, h in ((11, "lb1"), (12, "lb2"))}
DETECT = "id=debian\ninit=sysv\n@@hoststate\n"


def engine(transport: FakeTransport, owner: Owner) -> Engine:
    made = Engine(transport, NODES, "debian", lambda event: None, Redactor(),
                  stop=threading.Event())
    made.hold(owner)
    return made


def taking_every_lock() -> FakeTransport:
    """Hosts where the claim takes the lock, and every other command succeeds quietly."""
    transport = FakeTransport()
    transport.on(lambda host, script, stdin: (0, DETECT + "@@lock-taken\n", "")
                 if "id=%s" in script else None)
    transport.on(lambda host, script, stdin: (0, "", ""))
    return transport


def test_a_run_held_elsewhere_is_refused_in_its_first_round_trip_and_gives_back_what_it_took(
        ) -> None:
    transport = FakeTransport()
    held = f"@@lock-held 4 {'a' * 64} {OTHER.line()}\n"
    transport.on(lambda host, script, stdin: (0, DETECT + ("@@lock-taken\n" if host == "lb1"
                                                          else held), "")
                 if "id=%s" in script else None)
    transport.on(lambda host, script, stdin: (0, "", ""))
    runner = engine(transport, ME)
    with pytest.raises(JournalError, match=r"lb2: .* held by ops@ws2 \(pid 99, deploy lb\)"):
        runner.gather_facts(("lb1", "lb2"))
    # one round trip each, then lb1's lock given back; no heartbeat started
    assert [h for h, s in transport.calls if "id=%s" not in s] == ["lb1"]
    assert "rm -f" in transport.calls[-1][1] and transport.kept == []


def test_a_held_run_beats_and_its_changes_carry_the_hosts_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HostState, "heartbeat_after", 0)
    transport = taking_every_lock()
    runner = engine(transport, ME)
    runner.gather_facts(("lb1", "lb2"))
    assert sorted(h for h, _ in transport.kept) == ["lb1", "lb2"]
    log = journal(tmp_path)
    result = runner.runner.run("lb1", Command("true", summary="do it"), "lb.sysctl",
                               journal=log)
    assert result.command.startswith("{\n") and "runs/20261202-125000-000-lb-deploy.json" in (
        result.command)
    assert result.command.endswith("\ntrue") and '"lb2"' not in result.command  # its own
    # a command of lb1's step run on another host (a drain on a balancer) carries no record:
    # lb1's would be left on that host
    elsewhere = runner.runner.run("lb1", Command("true", summary="drain", on="lb9"),
                                  "lb.sysctl", journal=log)
    assert elsewhere.command == "true" and transport.calls[-1] == ("lb9", "true")
    state = runner.hoststate
    assert isinstance(state, HostState)
    state.release()
    assert all("rm -f" in s for h, s in transport.calls[-2:])


@dataclass(frozen=True)
class Touches(Operation[Probe]):
    """Makes `path` exist; `background` as a worker daemon's restart."""

    op_id: str
    path: str
    background: bool = False

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw(f"test -e {self.path}")

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.exited == 0

    def verify(self, ctx: HostContext, seen: Probe) -> bool:
        return True

    def intent(self, ctx: HostContext, seen: Probe) -> dict[str, object]:
        return {"kind": "test-file", "path": self.path, "previous": None}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"touch {self.path}")]


def test_a_background_change_writes_the_hosts_record_first_and_alone(tmp_path: Path) -> None:
    """The host's record is one file: commands that run beside others on the host carry
    none (two writers of it at once raced: `mv: cannot stat ...json.new`). The record is
    written first, in a round trip of its own, and only the foreground command carries it."""
    transport = taking_every_lock()
    runner = engine(transport, ME)
    runner.gather_facts(("lb1",))
    log = journal(tmp_path)
    step = Step("lb.files", "files", {"lb1": (Touches("w", "/w", background=True),
                                              Touches("n", "/n"))})
    runner.run(Runbook("t", (step,)), log)
    scripts = [script for host, script in transport.calls if host == "lb1"]
    record = f"runs/{log.run_id}.json"
    behind = scripts.index("touch /w")  # no record of its own
    kept = [i for i, script in enumerate(scripts) if record in script and script.endswith("\ntrue")]
    assert kept and kept[0] < behind  # the record went first, alone
    (front,) = [script for script in scripts if script.endswith("\ntouch /n")]
    assert record in front  # the one in the foreground carries it


def test_the_locks_are_given_back_on_every_host_at_once_and_a_failed_one_is_kept() -> None:
    transport = FakeTransport()
    transport.on(lambda host, script, stdin: (0, DETECT + "@@lock-taken\n", "")
                 if "id=%s" in script else None)
    # each release waits for the other hosts' (one after another, the barrier breaks)
    barrier = threading.Barrier(3, timeout=5)

    def release(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        barrier.wait()
        if host == "lb3":
            raise TransportError("lb3", "connection lost")
        return 0, "", ""

    transport.on(release)
    runner = engine(transport, ME)
    runner.gather_facts(("lb1", "lb2", "lb3"))
    state = runner.hoststate
    assert isinstance(state, HostState)
    state.release()
    assert state.held == ["lb3"]


def test_the_heartbeats_start_only_once_the_run_has_lasted_their_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim sets the lock's mtime: a run shorter than HEARTBEAT_SECONDS (a no-op) starts
    no heartbeat; a longer one starts them on every host, and the release stops the wait."""
    assert HostState.heartbeat_after == HEARTBEAT_SECONDS < STALE_SECONDS
    transport = taking_every_lock()
    runner = engine(transport, ME)
    runner.gather_facts(("lb1", "lb2"))
    state = runner.hoststate
    assert isinstance(state, HostState)
    state.release()
    assert transport.kept == []
    monkeypatch.setattr(HostState, "heartbeat_after", 0.05)
    runner = engine(transport, ME)
    runner.gather_facts(("lb1", "lb2"))
    deadline = time.monotonic() + 5
    while len(transport.kept) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(h for h, _ in transport.kept) == ["lb1", "lb2"]


def test_facts_started_ahead_run_while_the_caller_goes_on_and_are_taken_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`start_facts` sends the detection (and the claims) at once in the background: the
    caller goes on while the hosts answer, and `gather_facts` takes those answers instead of
    asking again; the heartbeats then start on every host at once."""
    monkeypatch.setattr(HostState, "heartbeat_after", 0)
    transport = FakeTransport()
    answering = threading.Event()
    transport.on(lambda host, script, stdin: (answering.wait(5), (0, DETECT + "@@lock-taken\n",
                                                                  ""))[1]
                 if "id=%s" in script else None)
    runner = engine(transport, ME)
    runner.start_facts(("lb1", "lb2"))
    deadline = time.monotonic() + 5
    while len(transport.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(h for h, _ in transport.calls) == ["lb1", "lb2"]  # sent before gathering
    answering.set()
    runner.gather_facts(("lb1", "lb2"))
    assert len(transport.calls) == 2, "the facts were not asked for twice"
    assert runner.hosts.facts["lb2"] == {"platform": "debian", "init": "sysv"}
    state = runner.hoststate
    assert isinstance(state, HostState) and sorted(state.held) == ["lb1", "lb2"]
    assert sorted(h for h, _ in transport.kept) == ["lb1", "lb2"]


def test_a_run_ending_before_it_gathers_the_facts_started_ahead_gives_their_locks_back(
        ) -> None:
    transport = taking_every_lock()
    runner = engine(transport, ME)
    runner.start_facts(("lb1", "lb2"))
    runner.settle_facts()  # as the session ends (the display failed to load, say)
    assert sorted(h for h, s in transport.calls if "rm -f" in s) == ["lb1", "lb2"]
    assert transport.kept == []
    runner.settle_facts()  # only once
    assert sum("rm -f" in s for _, s in transport.calls) == 2
