"""The engine with a fake transport: ordering, parallelism, failure, journal, resume, rollback.

Engine logic, not shell: the operations here are defined in this file with a five-word
vocabulary (`cat /s1/x`, `echo 1 > /s1/x`, ...) that `hadeploy.testing.FakeHost` answers
from a dict of files. Observers put first in the FakeTransport's handler list look at each
command as it arrives (to read the journal at that moment, hold hosts at a barrier, set the
stop event or cut a host off) and then let the FakeHost answer it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from hadeploy import framing
from hadeploy.engine import Engine, PlanItem
from hadeploy.engine.probing import batch_probe, split_probe
from hadeploy.errors import (
    CommandFailed,
    HadeployError,
    Interrupted,
    JournalError,
    StepFailed,
    TransportError,
    host_reason,
)
from hadeploy.events import Event
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, now
from hadeploy.ops import UNDO, AnyOp, Requirement
from hadeploy.ops.base import Command, Fact, HostContext, Operation, Probe, Record, SourceRead
from hadeploy.platforms import profile_for
from hadeploy.redact import Redactor
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeHost, FakeTransport, batch_answer, batch_probes
from hadeploy.transport.base import Result

HOSTS = ("a", "b", "c")
FACTS = {"platform": "debian", "init": "systemd"}
RUN_ID = "20260101-000000-000-t-deploy"


# -- operations of the tiny vocabulary ------------------------------------------------------


@dataclass(frozen=True)
class SetFile(Operation[Probe]):
    """`path` holds `value`; `then` are extra commands run after the write (to fail)."""

    op_id: str
    path: str
    value: str
    then: tuple[str, ...] = ()

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw(f"cat {self.path}")

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.exited == 0 and seen.stdout.strip() == self.value

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        previous = seen.stdout.strip() if seen.exited == 0 else None
        return {"kind": "test-file", "path": self.path, "previous": previous}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo {self.value} > {self.path}"), *map(Command, self.then)]


def undo_test_file(ctx: HostContext, record: Record) -> list[Command]:
    """Put the file back as the journal says it was, from the record alone."""
    if record["previous"] is None:
        return [Command(f"rm -f {record['path']}")]
    return [Command(f"echo {record['previous']} > {record['path']}")]


@dataclass(frozen=True)
class NoEffect(SetFile):
    """Claims to set the file but its command does nothing: verify must catch it."""

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command("true")]


@dataclass(frozen=True)
class RestartAfter(Operation[Probe]):
    """Done unless a step in `after` changed the host in this run (like ServiceRunning)."""

    op_id: str
    after: frozenset[str]
    touches: str = "/restarted"

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw("true")

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return not (self.after & ctx.changed_steps)

    def verify(self, ctx: HostContext, seen: Probe) -> bool:
        return True

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo yes > {self.touches}")]


@dataclass(frozen=True)
class EditsMissingFile(SetFile):
    """Like FileEdit of a file that is not there: `done` raises FileNotFoundError."""

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        raise FileNotFoundError(f"{self.path} does not exist on {ctx.node.name}")


# -- the simulated world --------------------------------------------------------------------


def node(name: str) -> Node:
    return Node(name, IPv4Address(f"198.18.0.{10 + ord(name[0]) - ord('a')}"))


def each(hosts: tuple[str, ...], *ops: AnyOp) -> dict[str, tuple[AnyOp, ...]]:
    return dict.fromkeys(hosts, ops)


Observer = Callable[[str, str], None]


@dataclass
class World:
    """Hosts with files, a fake transport answering from them, events, one journal path."""

    tmp: Path
    names: tuple[str, ...] = HOSTS
    hosts: dict[str, FakeHost] = field(init=False)
    transport: FakeTransport = field(init=False)
    events: list[Event] = field(init=False)
    stop: threading.Event = field(init=False)

    def __post_init__(self) -> None:
        self.hosts = {h: FakeHost(h) for h in self.names}
        self.restart()

    def restart(self) -> None:
        """A new hadeploy process: fresh transport, events and stop flag, same hosts."""
        self.transport = FakeTransport()
        for host in self.hosts.values():
            self.transport.on(host)
        self.events = []
        self.stop = threading.Event()

    def observe(self, observer: Observer) -> None:
        """Call `observer(host, script)` on every command before a host answers it."""

        def handler(host: str, script: str, stdin: bytes | None) -> None:
            observer(host, script)

        self.transport.on(handler, first=True)

    def fail(self, host: str, script: str, stderr: str = "boom", code: int = 1) -> None:
        """Make `script` exit `code` on `host` (without running it)."""

        def handler(h: str, s: str, stdin: bytes | None) -> tuple[int, str, str] | None:
            return (code, "", stderr) if (h, s) == (host, script) else None

        self.transport.on(handler, first=True)

    def engine(self, listener: Callable[[Event], None] | None = None,
               **kwargs: Any) -> Engine:
        def listen(event: Event) -> None:
            self.events.append(event)
            if listener:
                listener(event)

        engine = Engine(self.transport, {h: node(h) for h in self.names}, "debian", listen,
                        stop=self.stop, **kwargs)
        engine.apply_facts(dict.fromkeys(self.names, FACTS))
        return engine

    @property
    def path(self) -> Path:
        return self.tmp / "runs" / f"{RUN_ID}.json"

    def journal(self, run_id: str = RUN_ID, kind: str = "deploy") -> Journal:
        return Journal(self.tmp / "runs" / f"{run_id}.json", run_id, "t", kind, "hosts.toml",
                       "fingerprint", now())

    def on_disk(self) -> Journal:
        return Journal.load(self.path)

    def files(self, host: str) -> dict[str, str]:
        return {k: v.strip() for k, v in self.hosts[host].files.items()}

    def applied(self, host: str) -> list[str]:
        """Every command but the probes on `host`, in order."""
        return [s for s in self.transport.commands_on(host) if batch_probes(s) is None]

    def probed(self, host: str, path: str) -> bool:
        return any(f"cat {path}" in s for s in self.transport.commands_on(host)
                   if batch_probes(s) is not None)

    def kinds(self, step: str | None = None) -> list[tuple[str, str | None]]:
        return [(e.kind, e.host) for e in self.events if step is None or e.step == step]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def states(journal: Journal, step: str) -> dict[str, str]:
    return {h: e.state for h, e in journal.step(step).hosts.items()}


def runbook(*steps: Step) -> Runbook:
    return Runbook("t", steps)


TWO_STEPS = runbook(
    Step("s1", "first", each(HOSTS, SetFile("x", "/s1/x", "1"))),
    Step("s2", "second", each(HOSTS, SetFile("y", "/s2/y", "2"))),
)


# -- ordering and concurrency ---------------------------------------------------------------


def test_steps_run_in_order_probe_apply_verify(world: World) -> None:
    world.hosts["c"].files["/s1/x"] = "1\n"  # already done on c
    world.engine().run(TWO_STEPS, journal := world.journal())

    for host in HOSTS:
        scripts = world.transport.commands_on(host)
        s1 = [i for i, s in enumerate(scripts) if "/s1/" in s]
        s2 = [i for i, s in enumerate(scripts) if "/s2/" in s]
        assert max(s1) < min(s2), f"{host}: step 2 began before step 1 ended"
    # probe, apply, verify: one round trip each
    assert [batch_probes(s) is not None for s in world.transport.commands_on("a")] == [
        True, False, True, True, False, True]
    assert world.applied("c") == ["echo 2 > /s2/y"]  # nothing to do for s1 on c
    assert journal.status == "done"
    assert states(world.on_disk(), "s1") == {"a": "changed", "b": "changed", "c": "ok"}
    assert states(world.on_disk(), "s2") == dict.fromkeys(HOSTS, "changed")
    started = [e.step for e in world.events if e.kind == "step-started"]
    assert started == ["s1", "s2"]
    assert world.events[-1].kind == "run-finished"


def test_hosts_of_a_step_run_in_parallel(world: World) -> None:
    # Each host's apply waits until all three hosts are applying: if the engine ran the
    # hosts one after another, the first would wait alone and the barrier would break.
    barrier = threading.Barrier(len(HOSTS), timeout=5)

    def hold(host: str, script: str) -> None:
        if script.startswith("echo 1 >"):
            barrier.wait()

    world.observe(hold)
    world.engine().run(runbook(TWO_STEPS.steps[0]), world.journal())
    assert states(world.on_disk(), "s1") == dict.fromkeys(HOSTS, "changed")


def test_serial_step_runs_one_host_at_a_time_with_last_probe_hosts_last(world: World) -> None:
    world.hosts["a"].files["/vip"] = "last\n"  # a holds the VIP: it must go last
    step = Step("svc", "restart", each(HOSTS, SetFile("svc", "/svc/x", "1")), serial=True,
                last_probe="cat /vip")
    active: set[str] = set()
    most: list[int] = []
    lock = threading.Lock()
    # Two hosts in flight at once would meet here; one host alone waits 0.2 s once, after
    # which the barrier stays broken and costs nothing.
    barrier = threading.Barrier(2, timeout=0.2)

    def enter(host: str, script: str) -> None:
        if "/svc/" in script and batch_probes(script) and host not in active:
            with lock:
                active.add(host)
                most.append(len(active))
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    def leave(event: Event) -> None:
        if event.kind == "host-changed":
            with lock:
                active.discard(event.host or "")

    world.observe(enter)
    world.engine(leave).run(runbook(step), world.journal())

    assert max(most) == 1
    order = [e.host for e in world.events if e.kind == "host-started"]
    assert order == ["b", "c", "a"]
    assert states(world.on_disk(), "svc") == dict.fromkeys(HOSTS, "changed")


@dataclass(frozen=True)
class StartsOrRestarts(SetFile):
    """Like a service: a host without the file has nothing running (its apply only starts);
    one with another value serves, and the apply interrupts it."""

    def interrupts(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.exited == 0


def test_a_serial_steps_hosts_that_only_start_go_together_first(tmp_path: Path) -> None:
    """`starts_together`: new controllers (nothing running) start at once; a host whose
    daemon serves is restarted after them, alone; a host already done changes nothing."""
    hosts = (*HOSTS, "d")
    world = World(tmp_path, hosts)
    world.hosts["c"].files["/svc/x"] = "0\n"  # c serves: restarted after a and b
    world.hosts["d"].files["/svc/x"] = "1\n"  # done: nothing to do
    step = Step("svc", "start", each(hosts, StartsOrRestarts("svc", "/svc/x", "1")),
                serial=True, starts_together=True)
    # a and b must be applying at once for the barrier to pass; c alone would break it
    barrier = threading.Barrier(2, timeout=5)
    met: list[str] = []

    def hold(host: str, script: str) -> None:
        if script.startswith("echo 1 >"):
            if host in ("a", "b"):
                barrier.wait()
            met.append(host)

    world.observe(hold)
    world.engine().run(runbook(step), world.journal())
    assert sorted(met[:2]) == ["a", "b"] and met[2:] == ["c"]
    assert states(world.on_disk(), "svc") == {"a": "changed", "b": "changed", "c": "changed",
                                             "d": "ok"}


def test_a_serial_step_probed_to_order_its_hosts_is_not_probed_again(world: World) -> None:
    """Deciding who only starts takes each host's probe; the host's turn reuses it while no
    command ran since (a no-op: one round trip per host, not two)."""
    for host in HOSTS:
        world.hosts[host].files["/svc/x"] = "1\n"
    step = Step("svc", "start", each(HOSTS, StartsOrRestarts("svc", "/svc/x", "1")),
                serial=True, starts_together=True)
    world.engine().run(runbook(step), world.journal())
    for host in HOSTS:
        (only,) = world.transport.commands_on(host)
        assert batch_probes(only) is not None
    assert states(world.on_disk(), "svc") == dict.fromkeys(HOSTS, "ok")


# -- failure --------------------------------------------------------------------------------


def test_stops_at_the_first_failed_step(world: World) -> None:
    world.fail("b", "echo 1 > /s1/x", stderr="disk on fire")
    with pytest.raises(StepFailed) as caught:
        world.engine().run(TWO_STEPS, world.journal())

    assert caught.value.step_id == "s1"
    assert set(caught.value.failures) == {"b"}
    assert "disk on fire" in str(caught.value)
    for host in HOSTS:
        assert not world.probed(host, "/s2/y"), f"step 2 was probed on {host}"
    disk = world.on_disk()
    assert disk.status == "failed"
    assert states(disk, "s1") == {"a": "changed", "b": "failed", "c": "changed"}
    assert "disk on fire" in (disk.step("s1").hosts["b"].error or "")
    assert states(disk, "s2") == dict.fromkeys(HOSTS, "pending")
    assert ("run-failed", None) in world.kinds()


def test_failed_host_rolls_back_its_changes_in_the_step_newest_first(world: World) -> None:
    for host in HOSTS:
        world.hosts[host].files.update({"/p/one": "old1\n", "/p/two": "old2\n"})
    ops = (SetFile("one", "/p/one", "new1"), SetFile("two", "/p/two", "new2"),
           # writes, then its second command fails: a half-done operation
           SetFile("three", "/p/three", "new3", then=("echo no space >&2; exit 28",)))
    step = Step("p", "three files", {"a": ops[:2], "b": ops})

    with pytest.raises(StepFailed):
        world.engine().run(runbook(step), world.journal())

    assert world.applied("b") == [
        "echo new1 > /p/one", "echo new2 > /p/two", "echo new3 > /p/three",
        "echo no space >&2; exit 28",
        # undo, newest first, including the half-done third operation
        "rm -f /p/three", "echo old2 > /p/two", "echo old1 > /p/one",
    ]
    assert world.files("b") == {"/p/one": "old1", "/p/two": "old2"}
    assert world.files("a") == {"/p/one": "new1", "/p/two": "new2"}  # a keeps its changes
    disk = world.on_disk()
    assert states(disk, "p") == {"a": "changed", "b": "failed"}
    assert [c["rolled_back"] for c in disk.step("p").hosts["b"].changes] == [True] * 3
    assert not any(c.get("rolled_back") for c in disk.step("p").hosts["a"].changes)
    assert "exited 28" in (disk.step("p").hosts["b"].error or "")


@dataclass(frozen=True)
class Behind(SetFile):
    """A SetFile applied in the background (like a worker daemon's restart)."""

    background: bool = True


def test_a_background_operation_runs_while_the_next_ones_apply(world: World) -> None:
    # The background write and the next operation's write each wait for the other: applied
    # one after the other, the first would wait alone and the barrier would break.
    barrier = threading.Barrier(2, timeout=5)

    def hold(host: str, script: str) -> None:
        if script in ("echo w > /w", "echo n > /n"):
            barrier.wait()

    world.observe(hold)
    step = Step("b", "background", {"a": (Behind("w", "/w", "w"), SetFile("n", "/n", "n"))})
    world.engine().run(runbook(step), world.journal())

    assert world.files("a") == {"/w": "w", "/n": "n"}
    scripts = world.transport.commands_on("a")
    verify = max(i for i, s in enumerate(scripts) if batch_probes(s) is not None)
    assert verify > scripts.index("echo w > /w")  # re-probed once the background one ended
    entry = world.on_disk().step("b").hosts["a"]
    assert entry.state == "changed"
    assert [c["op"] for c in entry.changes] == ["w", "n"]  # journaled in the step's order


def test_a_failed_background_operation_fails_the_step_once_the_rest_ended(
        world: World) -> None:
    world.hosts["a"].files.update({"/w": "old-w\n", "/n": "old-n\n"})
    ended = threading.Event()

    def slow_failure(host: str, script: str) -> None:
        if script == "exit 3":  # the background failure waits until the next write is done
            assert ended.wait(5)
        if script == "echo n > /n":
            ended.set()

    world.observe(slow_failure)
    step = Step("b", "background", {"a": (Behind("w", "/w", "w", then=("exit 3",)),
                                          SetFile("n", "/n", "n"))})
    with pytest.raises(StepFailed, match="exited 3"):
        world.engine().run(runbook(step), world.journal())

    applied = world.applied("a")
    assert applied.index("exit 3") < applied.index("echo old-n > /n")  # no undo raced it
    assert world.files("a") == {"/w": "old-w", "/n": "old-n"}  # both undone
    entry = world.on_disk().step("b").hosts["a"]
    assert entry.state == "failed"
    assert [(c["op"], c["rolled_back"]) for c in entry.changes] == [("w", True), ("n", True)]


def test_a_failure_after_a_background_operation_waits_for_it_before_the_undo(
        world: World) -> None:
    world.hosts["a"].files["/w"] = "old-w\n"
    failed, released, undone_after = threading.Event(), threading.Event(), []
    world.fail("a", "wait-for-failure", code=0, stderr="")  # answered once the observer lets it

    def late(host: str, script: str) -> None:
        if script == "wait-for-failure":  # the background command ends after the failure
            assert failed.wait(5)
            released.set()
        if script == "exit 4":
            failed.set()
        if script == "echo old-w > /w":
            undone_after.append(released.is_set())

    world.observe(late)
    step = Step("b", "background", {"a": (Behind("w", "/w", "w", then=("wait-for-failure",)),
                                          SetFile("n", "/n", "n", then=("exit 4",)))})
    with pytest.raises(StepFailed, match="exited 4"):
        world.engine().run(runbook(step), world.journal())

    assert undone_after == [True]
    assert world.files("a") == {"/w": "old-w"}
    entry = world.on_disk().step("b").hosts["a"]
    assert [(c["op"], c["rolled_back"]) for c in entry.changes] == [("w", True), ("n", True)]


def test_verify_after_apply_catches_an_operation_without_effect(world: World) -> None:
    world.hosts["a"].files["/v"] = "before\n"
    step = Step("v", "verify", {"a": (SetFile("w", "/w", "1"), NoEffect("v", "/v", "after"))})
    with pytest.raises(StepFailed, match="not in the desired state after applying: v"):
        world.engine().run(runbook(step), world.journal())
    assert world.files("a") == {"/v": "before"}  # /w, which did work, was undone too
    assert states(world.on_disk(), "v") == {"a": "failed"}


def test_an_operation_that_cannot_decide_fails_its_host_not_the_run(world: World) -> None:
    step = Step("e", "edit", {"a": (EditsMissingFile("e", "/etc/missing", "1"),),
                              "b": (SetFile("x", "/x", "1"),)})
    with pytest.raises(StepFailed, match="/etc/missing does not exist on a"):
        world.engine().run(runbook(step), world.journal())
    disk = world.on_disk()
    assert disk.status == "failed"
    assert states(disk, "e") == {"a": "failed", "b": "changed"}


def test_undo_of_a_failed_step_runs_even_when_stop_is_requested(world: World) -> None:
    world.hosts["a"].files["/f"] = "old\n"
    step = Step("f", "fail", {"a": (SetFile("f", "/f", "new", then=("exit 1",)),)})

    def stop_at_failure(host: str, script: str) -> None:
        if script == "exit 1":
            world.stop.set()

    world.observe(stop_at_failure)
    with pytest.raises(StepFailed):
        world.engine().run(runbook(step), world.journal())
    assert world.files("a") == {"/f": "old"}
    assert world.on_disk().step("f").hosts["a"].changes[0]["rolled_back"] is True


def test_undo_failure_is_recorded_and_the_changes_stay_for_rollback(world: World) -> None:
    world.hosts["a"].files["/f"] = "old\n"
    step = Step("f", "fail", {"a": (SetFile("f", "/f", "new", then=("exit 1",)),)})
    world.fail("a", "echo old > /f", stderr="read-only file system")
    with pytest.raises(StepFailed):
        world.engine().run(runbook(step), world.journal())
    entry = world.on_disk().step("f").hosts["a"]
    assert entry.state == "failed"
    assert "rolling back this step's changes failed too" in (entry.error or "")
    assert not entry.changes[0].get("rolled_back")


def test_transport_error_leaves_changes_recorded_not_rolled_back(world: World) -> None:
    ops = (SetFile("one", "/one", "1"), SetFile("two", "/two", "2"))

    def cut(host: str, script: str) -> None:
        if host == "b" and script == "echo 1 > /one":
            world.transport.down.add("b")  # this command runs, the next one cannot

    world.observe(cut)
    with pytest.raises(StepFailed, match="connection lost"):
        world.engine().run(runbook(Step("t", "two", each(("a", "b"), *ops))), world.journal())

    assert world.transport.commands_on("b")[-1] == "echo 2 > /two"  # nothing after it
    entry = world.on_disk().step("t").hosts["b"]
    assert entry.state == "failed"
    assert [(c["op"], c.get("rolled_back", False)) for c in entry.changes] == [
        ("one", False), ("two", False)]
    assert world.files("b") == {"/one": "1"}

    # Back online, a rollback undoes exactly what was recorded.
    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    assert world.files("b") == {}
    assert world.files("a") == {}


@dataclass(frozen=True)
class ReportsAfter(SetFile):
    """Journals nothing before applying, only what its command reports (an outcome)."""

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {}

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        return {"kind": "test-file", "path": self.path, "previous": None}


def test_a_change_known_only_from_its_outcome_is_journaled_and_undone(world: World) -> None:
    world.engine().run(runbook(Step("o", "o", {"a": (ReportsAfter("o", "/o", "1"),)})),
                       world.journal())
    assert [c["record"] for c in world.on_disk().step("o").hosts["a"].changes] == [
        {"kind": "test-file", "path": "/o", "previous": None}]
    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    assert world.files("a") == {}


@dataclass(frozen=True)
class ReportsThenFails(SetFile):
    """Writes the file, says so on stdout, then fails (a move done half-way)."""

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo {self.value} > {self.path}\necho wrote\nexit 1")]

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        if "wrote" not in "".join(outputs):
            return {}
        return {"kind": "test-file", "path": self.path, "previous": None}


def test_what_a_failed_command_reported_is_journaled_and_undone(world: World) -> None:
    """A command that fails half-way may already have changed something and said so; the
    failed step's undo on that host must know it (grizzly's endpoint moves are such)."""
    with pytest.raises(StepFailed):
        world.engine().run(runbook(Step("o", "o", {"a": (ReportsThenFails("o", "/o", "1"),)})),
                           world.journal())
    (change,) = world.on_disk().step("o").hosts["a"].changes
    assert change["record"] == {"kind": "test-file", "path": "/o", "previous": None}
    assert change.get("rolled_back")
    assert world.files("a") == {}


def test_keyboard_interrupt_leaves_the_journal_interrupted(world: World) -> None:
    def ctrl_c(host: str, script: str) -> None:
        if script == "echo 1 > /s1/x":
            raise KeyboardInterrupt  # no signal handler installed: Python raises it

    world.observe(ctrl_c)
    engine = world.engine()
    with pytest.raises(KeyboardInterrupt):
        engine.run(runbook(Step("s1", "x", {"a": (SetFile("x", "/s1/x", "1"),)})),
                   world.journal())
    assert world.on_disk().status == "interrupted"


def test_a_bug_in_an_operation_leaves_the_journal_failed_not_running(world: World) -> None:
    @dataclass(frozen=True)
    class Buggy(SetFile):
        def done(self, ctx: HostContext, seen: Probe) -> bool:
            raise KeyError("oops")

    with pytest.raises(KeyError):
        world.engine().run(runbook(Step("b", "b", {"a": (Buggy("b", "/b", "1"),)})),
                           world.journal())
    assert world.on_disk().status == "failed"


# -- the journal during a run ---------------------------------------------------------------


def test_journal_on_disk_holds_every_change_and_failure_as_it_happens(world: World) -> None:
    """A change is on disk with its host's record before the host says it changed, a failure
    when the host says it failed; the hosts' progress (running, ok) follows at the latest
    when the step ends, and a resume re-probes a host whose progress was not written yet."""
    world.hosts["b"].files["/s1/x"] = "1\n"  # ok on b
    world.fail("c", "echo 1 > /s1/x")
    seen: list[tuple[str, dict[str, str], list[str]]] = []

    def snapshot(event: Event) -> None:
        if event.kind in ("run-started", "host-changed", "host-failed", "step-finished"):
            journal = Journal.load(world.path)
            seen.append((f"{event.kind} {event.host or ''}".strip(), states(journal, "s1"),
                         sorted(h for h, e in journal.step("s1").hosts.items() if e.changes)))

    step = Step("s1", "first", each(HOSTS, SetFile("x", "/s1/x", "1")), serial=True)
    with pytest.raises(StepFailed):
        world.engine(snapshot).run(runbook(step), world.journal())

    assert seen == [
        ("run-started", {"a": "pending", "b": "pending", "c": "pending"}, []),
        ("host-changed a", {"a": "running", "b": "pending", "c": "pending"}, ["a"]),
        ("host-failed c", {"a": "changed", "b": "ok", "c": "failed"}, ["a", "c"]),
        ("step-finished", {"a": "changed", "b": "ok", "c": "failed"}, ["a", "c"]),
    ]
    changes = world.on_disk().step("s1").hosts
    assert changes["a"].changes == [{"op": "x", "title": "x", "record": {
        "kind": "test-file", "path": "/s1/x", "previous": None}}]
    assert changes["b"].changes == []
    assert changes["c"].changes[0]["rolled_back"] is True

    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    assert states(world.on_disk(), "s1") == {"a": "rolled-back", "b": "ok", "c": "failed"}


def test_a_step_that_changes_nothing_costs_no_journal_write(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write of the journal is two fsyncs: a no-op re-run writes it when it starts and
    when it ends, not twice per host and step; a step that changes something once."""
    for host in HOSTS:
        world.hosts[host].files.update({"/s1/x": "1\n", "/s2/y": "2\n"})
    writes: list[str] = []
    save = Journal.save

    def counted(journal: Journal, redact: Callable[[str], str] | None = None) -> None:
        writes.append(journal.run_id)
        save(journal, redact)

    monkeypatch.setattr(Journal, "save", counted)
    world.engine().run(TWO_STEPS, world.journal())
    assert states(world.on_disk(), "s1") == dict.fromkeys(HOSTS, "ok")
    assert states(world.on_disk(), "s2") == dict.fromkeys(HOSTS, "ok")
    assert len(writes) == 2  # started, finished
    world.hosts["b"].files["/s2/y"] = "3\n"
    writes.clear()
    world.engine().run(TWO_STEPS, world.journal("run-2"))
    # started, the change's intent and outcome (one write: nothing to add), s2, finished
    assert len(writes) == 4


def test_intent_is_journaled_before_the_apply_command_runs(world: World) -> None:
    world.hosts["a"].files["/s1/x"] = "old\n"
    at_apply: list[Journal] = []

    def read_journal(host: str, script: str) -> None:
        if script == "echo 1 > /s1/x":
            at_apply.append(Journal.load(world.path))

    world.observe(read_journal)
    world.engine().run(runbook(Step("s1", "x", {"a": (SetFile("x", "/s1/x", "1"),)})),
                       world.journal())

    (journal,) = at_apply
    entry = journal.step("s1").hosts["a"]
    assert entry.state == "running"
    assert entry.changes == [{"op": "x", "title": "x", "record": {
        "kind": "test-file", "path": "/s1/x", "previous": "old"}}]


def test_journal_file_is_private_and_no_temp_file_is_left(world: World) -> None:
    world.engine().run(TWO_STEPS, world.journal())
    assert [p.name for p in world.path.parent.iterdir()] == [world.path.name]
    assert world.path.stat().st_mode & 0o777 == 0o600


# -- resume ---------------------------------------------------------------------------------


def test_resume_after_failure_rechecks_only_what_is_not_done(world: World) -> None:
    world.fail("b", "echo 2 > /s2/y")
    with pytest.raises(StepFailed):
        world.engine().run(TWO_STEPS, world.journal())
    assert states(world.on_disk(), "s2") == {"a": "changed", "b": "failed", "c": "changed"}

    world.restart()  # a new process, the journal read back from disk
    journal = world.on_disk()
    world.engine().run(TWO_STEPS, journal)

    for host in HOSTS:
        assert not world.probed(host, "/s1/x"), f"completed step s1 re-probed on {host}"
    assert world.transport.commands_on("a") == []
    assert world.transport.commands_on("c") == []
    assert world.applied("b") == ["echo 2 > /s2/y"]
    assert journal.status == "done"
    assert states(world.on_disk(), "s2") == dict.fromkeys(HOSTS, "changed")
    assert ("step-skipped", None) in world.kinds("s1")


def test_resume_recognises_a_step_fixed_by_hand(world: World) -> None:
    world.fail("b", "echo 2 > /s2/y")
    with pytest.raises(StepFailed):
        world.engine().run(TWO_STEPS, world.journal())

    world.hosts["b"].files["/s2/y"] = "2\n"  # the operator fixed it meanwhile
    world.restart()
    world.engine().run(TWO_STEPS, world.on_disk())

    assert world.probed("b", "/s2/y")
    assert world.applied("b") == []
    disk = world.on_disk()
    assert disk.status == "done"
    assert states(disk, "s2") == {"a": "changed", "b": "ok", "c": "changed"}


def test_interrupt_stops_after_the_current_command_and_resumes(world: World) -> None:
    world.hosts["a"].files["/one"] = "orig\n"
    book = runbook(
        Step("s1", "two files", {"a": (SetFile("one", "/one", "1"), SetFile("two", "/two", "2"))}),
        Step("s2", "later", each(("a", "b"), SetFile("y", "/s2/y", "y"))),
    )

    def ctrl_c(host: str, script: str) -> None:
        if script == "echo 1 > /one":
            world.stop.set()  # what the SIGINT handler does

    world.observe(ctrl_c)
    with pytest.raises(Interrupted):
        world.engine().run(book, world.journal())

    assert world.applied("a") == ["echo 1 > /one"]  # that command finished; no other ran
    assert world.files("a") == {"/one": "1"}
    assert world.transport.commands_on("b") == []
    disk = world.on_disk()
    assert disk.status == "interrupted"
    entry = disk.step("s1").hosts["a"]
    assert entry.state == "pending"
    assert entry.changes == [{"op": "one", "title": "one", "record": {
        "kind": "test-file", "path": "/one", "previous": "orig"}}]
    assert ("run-failed", None) in world.kinds()

    world.restart()
    journal = world.on_disk()
    world.engine().run(book, journal)
    assert world.applied("a") == ["echo 2 > /two", "echo y > /s2/y"]
    assert journal.status == "done"
    # /one was changed by this run (before the interrupt): the host counts as changed
    assert states(world.on_disk(), "s1") == {"a": "changed"}

    # and rollback restores the value from before the interrupted attempt
    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    assert world.files("a") == {"/one": "orig"}
    assert world.files("b") == {}


def test_changed_steps_reach_later_operations(world: World) -> None:
    world.hosts["b"].files["/cfg"] = "new\n"  # config already right on b
    book = runbook(
        Step("cfg", "config", each(("a", "b"), SetFile("cfg", "/cfg", "new"))),
        Step("svc", "restart", each(("a", "b"), RestartAfter("svc", frozenset({"cfg"})))),
    )
    world.engine().run(book, world.journal())
    assert world.files("a") == {"/cfg": "new", "/restarted": "yes"}
    assert world.files("b") == {"/cfg": "new"}


# -- rollback -------------------------------------------------------------------------------


def test_rollback_of_a_completed_run_from_the_journal_alone(world: World) -> None:
    for host in HOSTS:
        world.hosts[host].files["/s1/x"] = f"was-{host}\n"
    world.engine().run(TWO_STEPS, world.journal())

    # A rollback knows no runbook and no operation: only the journal and UNDO.
    world.restart()
    log = world.journal("20260101-000001-000-t-rollback", kind="rollback")
    world.engine().rollback([world.on_disk()], log)

    for host in HOSTS:
        assert world.applied(host) == [
            "rm -f /s2/y", f"echo was-{host} > /s1/x"]  # newest first
        assert world.files(host) == {"/s1/x": f"was-{host}"}
    disk = world.on_disk()
    assert disk.rolled_back_by == log.run_id
    for step in ("s1", "s2"):
        assert states(disk, step) == dict.fromkeys(HOSTS, "rolled-back")
        assert all(c["rolled_back"] for e in disk.step(step).hosts.values()
                   for c in e.changes)
    saved = Journal.load(log.path)
    assert saved.status == "done"
    assert [s.id for s in saved.steps] == [f"{RUN_ID}/s2", f"{RUN_ID}/s1"]
    assert all(states(saved, s.id) == dict.fromkeys(HOSTS, "changed") for s in saved.steps)


@dataclass(frozen=True)
class RestartsForNewConfig(SetFile):
    """Like ServiceRunning after a config change: its undo restarts, deferred to the end."""

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {"kind": "test-restart", "path": self.path}


def undo_test_restart(ctx: HostContext, record: Record) -> list[Command]:
    """Restart once every other undo of the run has restored the files."""
    return [Command(f"echo restarted >> {record['path']}", deferred=True)]


@pytest.fixture(autouse=True)
def test_undoers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollback can undo the test operations' record kinds for the length of each test (the
    real kinds are in `hadeploy.ops.UNDO` from the start)."""
    monkeypatch.setitem(UNDO, "test-file", undo_test_file)
    monkeypatch.setitem(UNDO, "test-restart", undo_test_restart)


def test_rollback_runs_deferred_undo_commands_after_every_other_undo(world: World) -> None:
    for host in HOSTS:
        world.hosts[host].files["/s1/x"] = f"was-{host}\n"
    book = runbook(
        Step("s1", "config", each(HOSTS, SetFile("x", "/s1/x", "1"))),
        Step("s2", "service", each(HOSTS, RestartsForNewConfig("svc", "/svc", "up"))),
    )
    world.engine().run(book, world.journal())
    world.restart()
    log = world.journal("20260101-000001-000-t-rollback", kind="rollback")
    world.engine().rollback([world.on_disk()], log)
    for host in HOSTS:
        # Newest step first, but the restart waits until the config is restored.
        assert world.applied(host) == [f"echo was-{host} > /s1/x", "echo restarted >> /svc"]


@dataclass(frozen=True)
class RestartsWhatRan(RestartsForNewConfig):
    """A service that ran before the run, restarted for its new configuration."""

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {**super().intent(ctx, seen), "was_running": True}


def test_rollback_restores_the_hosts_that_served_before_first(world: World) -> None:
    """The original controller (a service restarted there) is restored, its deferred restart
    included, before anything is undone on the hosts the run brought in: they serve while
    it restarts."""
    book = runbook(
        Step("s1", "config", each(HOSTS, SetFile("x", "/s1/x", "1"))),
        Step("s2", "service", {"a": (RestartsWhatRan("svc", "/svc", "up"),),
                               **each(("b", "c"), SetFile("y", "/s2/y", "2"))}),
    )
    world.engine().run(book, world.journal())
    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    hosts = [host for host, script in world.transport.calls if "rm -f" in script
             or "restarted" in script]
    assert hosts[:2] == ["a", "a"] and set(hosts[2:]) == {"b", "c"}, hosts
    assert world.applied("a") == ["rm -f /s1/x", "echo restarted >> /svc"]
    for host in ("b", "c"):
        assert world.applied(host) == ["rm -f /s2/y", "rm -f /s1/x"]


def test_rollback_emits_host_rolled_back_once_per_host_and_step(world: World) -> None:
    world.hosts["c"].files["/s2/y"] = "2\n"  # nothing to undo for s2 on c
    world.engine().run(TWO_STEPS, world.journal())
    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    undone = sorted((e.step or "", e.host or "") for e in world.events
                    if e.kind == "host-rolled-back")
    assert undone == sorted([(f"{RUN_ID}/s1", h) for h in HOSTS]
                            + [(f"{RUN_ID}/s2", h) for h in ("a", "b")])


def test_rollback_twice_is_a_no_op_the_second_time(world: World) -> None:
    world.engine().run(TWO_STEPS, world.journal())
    world.restart()
    first = world.journal("20260101-000001-000-t-rollback", kind="rollback")
    world.engine().rollback([world.on_disk()], first)

    world.restart()
    second = world.journal("20260101-000002-000-t-rollback", kind="rollback")
    world.engine().rollback([world.on_disk()], second)
    assert world.transport.calls == []
    assert world.on_disk().rolled_back_by == first.run_id
    assert second.status == "done"
    assert second.steps == []


def test_rollback_of_several_runs_goes_newest_run_first(world: World) -> None:
    world.engine().run(runbook(TWO_STEPS.steps[0]), world.journal("r1"))
    world.hosts["a"].files["/s1/x"] = "by-hand\n"
    world.engine().run(runbook(Step("s1", "again", {"a": (SetFile("x", "/s1/x", "9"),)})),
                       world.journal("r2"))
    world.restart()
    runs = [Journal.load(world.tmp / "runs" / f"{r}.json") for r in ("r1", "r2")]
    world.engine().rollback(runs, world.journal("rb", kind="rollback"))
    assert world.applied("a") == ["echo by-hand > /s1/x", "rm -f /s1/x"]
    assert world.files("a") == {}


def test_rollback_refuses_a_change_it_does_not_know_how_to_undo(world: World) -> None:
    world.engine().run(runbook(TWO_STEPS.steps[0]), world.journal())
    data = json.loads(world.path.read_text())
    data["steps"][0]["hosts"]["a"]["changes"][0]["record"]["kind"] = "from-the-future"
    world.path.write_text(json.dumps(data))

    world.restart()
    log = world.journal("rb", kind="rollback")
    with pytest.raises(StepFailed, match="unknown kind 'from-the-future'"):
        world.engine().rollback([world.on_disk()], log)
    assert Journal.load(log.path).status == "failed"
    assert world.files("b") == {}  # the other hosts were still undone


def test_interrupted_rollback_is_resumable(world: World) -> None:
    world.engine().run(TWO_STEPS, world.journal())
    world.restart()

    def ctrl_c(host: str, script: str) -> None:
        if script == "rm -f /s2/y":
            world.stop.set()

    world.observe(ctrl_c)
    log = world.journal("rb", kind="rollback")
    with pytest.raises(Interrupted):
        world.engine().rollback([world.on_disk()], log)
    assert Journal.load(log.path).status == "interrupted"
    assert world.on_disk().rolled_back_by is None
    first = {h: world.applied(h) for h in HOSTS}
    assert all(len(cmds) <= 1 for cmds in first.values())  # stopped after one command

    world.restart()
    world.engine().rollback([world.on_disk()], world.journal("rb2", kind="rollback"))
    for host in HOSTS:
        assert world.files(host) == {}
        # each undo ran exactly once across the two attempts
        assert first[host] + world.applied(host) == ["rm -f /s2/y", "rm -f /s1/x"]
    assert world.on_disk().rolled_back_by == "rb2"


# -- secrets --------------------------------------------------------------------------------


SECRET = "hunter2-very-secret"


def test_secrets_never_reach_events_or_journal(world: World) -> None:
    leaky = SetFile("pw", "/pw", SECRET, then=(f"echo denied for {SECRET} >&2; exit 1",))
    step = Step("pw", f"set {SECRET}", {"a": (leaky,)})
    # The engine learns the secret from the values it hands to operations, with no redactor.
    engine = world.engine(secrets={"PW": SECRET})
    with pytest.raises(StepFailed) as caught:
        engine.run(runbook(step), world.journal())

    assert SECRET not in str(caught.value)
    assert SECRET not in world.path.read_text()
    for event in world.events:
        assert SECRET not in json.dumps(event.to_json()), event
    assert "denied for" in world.path.read_text()  # the stderr is there, masked


def test_redactor_masks_commands_and_errors(world: World) -> None:
    world.fail("a", f"echo {SECRET} > /pw", stderr=f"bad token {SECRET}\n")
    engine = world.engine(redactor=Redactor([SECRET]))
    with pytest.raises(StepFailed) as caught:
        engine.run(runbook(Step("pw", "pw", {"a": (SetFile("pw", "/pw", SECRET),)})),
                   world.journal())
    assert SECRET not in str(caught.value)
    assert SECRET not in world.path.read_text()
    assert not any(SECRET in json.dumps(e.to_json()) for e in world.events)
    assert any(e.kind == "command" for e in world.events)


# -- plan -----------------------------------------------------------------------------------


def plan_summary(items: list[PlanItem]) -> dict[tuple[str, str], tuple[list[str], list[str]]]:
    return {(i.step.id, i.host): ([o.op_id for o in i.done], [o.op_id for o, _, _ in i.pending])
            for i in items}


def test_plan_changes_nothing_and_reports_done_and_pending(world: World) -> None:
    world.hosts["b"].files.update({"/s1/x": "1\n", "/s2/y": "2\n"})
    before = {h: dict(w.files) for h, w in world.hosts.items()}
    book = runbook(*TWO_STEPS.steps,
                   Step("svc", "restart", each(HOSTS, RestartAfter("svc", frozenset({"s1"})))))

    items = world.engine().plan(book)

    assert all(batch_probes(s) is not None for _, s in world.transport.calls), \
        "plan issued something other than read-only probes"
    assert {h: w.files for h, w in world.hosts.items()} == before
    assert not world.path.exists()
    summary = plan_summary(items)
    assert summary[("s1", "a")] == ([], ["x"])
    assert summary[("s1", "b")] == (["x"], [])
    assert summary[("s2", "b")] == (["y"], [])
    # a restart that only a pending earlier step makes necessary is shown as pending
    assert summary[("svc", "a")] == ([], ["svc"])
    assert summary[("svc", "b")] == (["svc"], [])
    (_, commands, _), = next(i for i in items if (i.step.id, i.host) == ("s1", "a")).pending
    assert [c.script for c in commands] == ["echo 1 > /s1/x"]


def test_a_waiting_check_after_a_pending_change_is_not_probed_in_a_plan(world: World) -> None:
    """A check that polls until the earlier steps' work shows (APIs answering once started)
    would only wait out its bound in a plan where those steps are still to run."""
    world.hosts["b"].files["/s1/x"] = "1\n"
    check = Requirement("answers", Fact.raw("cat /s1/x"),
                        lambda ctx, seen: None if seen.stdout.strip() == "1" else "no x",
                        "x answers", waits=True)
    book = runbook(TWO_STEPS.steps[0], Step("verify", "check", each(HOSTS, check),
                                            read_only=True))
    items = world.engine().plan(book)
    summary = plan_summary(items)
    assert summary[("verify", "a")] == ([], ["answers"])
    assert summary[("verify", "b")] == (["answers"], [])  # nothing before it changes: probed
    (_, commands, preview), = next(i for i in items
                                   if (i.step.id, i.host) == ("verify", "a")).pending
    assert commands == [] and preview == ("  checked when the run gets here, after the "
                                          "changes above: x answers\n")
    probed_on_a = [probes for host, script in world.transport.calls if host == "a"
                   for _, probes in [batch_probes(script) or ("", [])]]
    assert sum(len(p) for p in probed_on_a) == 1  # s1's probe only, not the check's


def test_plan_reports_an_unreachable_host_as_an_error(world: World) -> None:
    world.transport.down.add("c")
    items = world.engine().plan(runbook(TWO_STEPS.steps[0]))
    errors = {i.host: i.error for i in items}
    assert errors["a"] is None
    assert "connection lost" in (errors["c"] or "")


def test_offline_plan_makes_no_transport_call(world: World) -> None:
    engine = Engine(FakeTransport(), {h: node(h) for h in HOSTS}, "debian", world.events.append)
    engine.assume_profiles(HOSTS)
    items = engine.plan(TWO_STEPS, offline=True)
    assert engine.transport.calls == []  # type: ignore[attr-defined]
    assert all(not i.done and len(i.pending) == 1 for i in items)
    assert len(items) == 6


# -- look-ahead and probes known locally ------------------------------------------------------


def batches_with(world: World, host: str, text: str) -> int:
    return sum(text in s for s in world.transport.commands_on(host) if batch_probes(s))


def test_a_no_op_re_run_with_look_ahead_costs_one_round_trip_per_host(world: World) -> None:
    for host in HOSTS:
        world.hosts[host].files.update({"/s1/x": "1\n", "/s2/y": "2\n"})
    world.transport.probe_ahead = True
    world.engine().run(TWO_STEPS, world.journal())

    for host in HOSTS:
        (only,) = world.transport.commands_on(host)
        parsed = batch_probes(only)
        assert parsed is not None and parsed[1] == ["cat /s1/x", "cat /s2/y"]
    assert states(world.on_disk(), "s2") == dict.fromkeys(HOSTS, "ok")
    assert world.events[-1].data["round_trips"] == dict.fromkeys(HOSTS, 1)


def test_probes_taken_ahead_are_not_trusted_once_a_command_ran(world: World) -> None:
    for host in HOSTS:
        world.hosts[host].files["/s2/y"] = "2\n"
    world.hosts["b"].files["/s1/x"] = "1\n"
    world.hosts["c"].files["/s1/x"] = "1\n"
    world.transport.probe_ahead = True
    world.engine().run(TWO_STEPS, world.journal())

    # a changed /s1/x: any s2 probe taken before may be stale, so each host probes s2 anew
    calls = world.transport.calls
    changed_at = calls.index(("a", "echo 1 > /s1/x"))
    for host in HOSTS:
        assert any(h == host and batch_probes(s) and "cat /s2/y" in s
                   for h, s in calls[changed_at:]), host
    assert [len(world.transport.commands_on(h)) for h in ("b", "c")] == [2, 2]
    assert states(world.on_disk(), "s1") == {"a": "changed", "b": "ok", "c": "ok"}


def _answers(ctx: HostContext, seen: Probe) -> str | None:
    return None if seen.stdout.strip() == "ok" else "no answer"


#: A verify step whose probe waits (`cat /w/wait` stands for polling an API) and whose look
#: does not (`cat /w/look`), after a step that changes nothing in a no-op.
VERIFY = Runbook("t", (TWO_STEPS.steps[0], Step("verify", "answers", each(HOSTS, Requirement(
    "answers", Fact.raw("cat /w/wait"), _answers, "answers", waits=True,
    glance=Fact.raw("cat /w/look"))), read_only=True)))


@pytest.mark.parametrize("looked", ["ok", "not yet"])
def test_a_waiting_probe_is_looked_at_ahead_and_run_only_if_the_look_fails(
        world: World, looked: str) -> None:
    """A no-op's verify steps cost no round trip of their own when their look, taken along
    with the first probe, finds everything answering; else the waiting probe runs."""
    for host in HOSTS:
        world.hosts[host].files.update({"/s1/x": "1\n", "/w/wait": "ok\n",
                                        "/w/look": f"{looked}\n"})
    world.transport.probe_ahead = True
    world.engine().run(VERIFY, world.journal())
    for host in HOSTS:
        first = batch_probes(world.transport.commands_on(host)[0])
        assert first is not None and first[1] == ["cat /s1/x", "cat /w/look"]
        assert batches_with(world, host, "cat /w/wait") == (looked != "ok")
    assert states(world.on_disk(), "verify") == dict.fromkeys(HOSTS, "ok")
    assert world.events[-1].data["round_trips"] == dict.fromkeys(HOSTS, 1 + (looked != "ok"))


@dataclass(frozen=True)
class CopyOf(Operation[Probe]):
    """/dst holds what /src on host a holds (a tree copy compares with the original's
    manifest the same way: a source probe)."""

    op_id: str
    src: str = "/src"
    dst: str = "/dst"

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw(f"cat {self.dst}")

    def source_probes(self, ctx: HostContext) -> tuple[SourceRead, ...]:
        return (SourceRead("a", f"cat {self.src}"),)

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.stdout == seen.sources[0]

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo {seen.sources[0].strip()} > {self.dst}")]


def test_hosts_comparing_with_one_source_read_it_once_until_a_command_runs(
        world: World) -> None:
    world.hosts["a"].files["/src"] = "v1\n"
    world.hosts["b"].files["/dst"] = "v1\n"
    world.hosts["c"].files["/dst"] = "v1\n"
    copy = Runbook("t", (Step("copy", "copy", each(("b", "c"), CopyOf("copy"))),))
    world.engine().run(copy, world.journal())
    assert world.transport.commands_on("a").count("cat /src") == 1  # b and c: one read
    world.restart()
    world.hosts["c"].files["/dst"] = "old\n"
    world.engine().run(copy, world.journal("20260101-000001-000-t-deploy"))
    reads = [i for i, (h, s) in enumerate(world.transport.calls) if (h, s) == ("a", "cat /src")]
    changed = world.transport.calls.index(("c", "echo v1 > /dst"))
    # read once for both probes, and again for c's verify once its command ran
    assert len(reads) == 2 and reads[0] < changed < reads[1]
    assert world.files("c")["/dst"] == "v1"


#: A step, then two copies from host a (see CopyOf) on b and c.
TWO_COPIES = runbook(Step("s1", "first", each(("b", "c"), SetFile("x", "/s1/x", "1"))),
                     Step("copy", "copy", each(("b", "c"), CopyOf("copy"))),
                     Step("copy2", "copy", each(("b", "c"), CopyOf("copy2", "/src2", "/dst2"))))


def test_copy_steps_ride_in_the_look_ahead_and_their_sources_are_read_in_one_batch(
        world: World) -> None:
    world.hosts["a"].files.update({"/src": "v1\n", "/src2": "v2\n"})
    for host in ("b", "c"):
        world.hosts[host].files.update({"/s1/x": "1\n", "/dst": "v1\n", "/dst2": "v2\n"})
    world.transport.probe_ahead = True
    world.engine().run(TWO_COPIES, world.journal())

    # a no-op: the copies' probes went along with s1's, and a read both sources in one
    # batch, once for both hosts
    for host in ("b", "c"):
        (only,) = world.transport.commands_on(host)
        parsed = batch_probes(only)
        assert parsed is not None and parsed[1] == ["cat /s1/x", "cat /dst", "cat /dst2"]
    (read,) = world.transport.commands_on("a")
    parsed = batch_probes(read)
    assert parsed is not None and parsed[1] == ["cat /src", "cat /src2"]
    assert states(world.on_disk(), "copy2") == {"b": "ok", "c": "ok"}


def test_a_copy_whose_source_changed_reads_it_again(world: World) -> None:
    world.hosts["a"].files.update({"/src": "v2\n", "/src2": "v2\n"})
    for host in ("b", "c"):
        world.hosts[host].files.update({"/s1/x": "1\n", "/dst": "v1\n", "/dst2": "v2\n"})
    world.transport.probe_ahead = True
    world.engine().run(TWO_COPIES, world.journal())
    # the batch read served the first copy's probe; its commands made the rest read anew
    assert world.files("b")["/dst"] == "v2" and world.files("c")["/dst"] == "v2"
    assert states(world.on_disk(), "copy") == {"b": "changed", "c": "changed"}
    assert states(world.on_disk(), "copy2") == {"b": "ok", "c": "ok"}
    assert world.transport.commands_on("a").count("cat /src2") == 1


def test_without_look_ahead_each_step_probes_only_itself(world: World) -> None:
    world.engine().run(TWO_STEPS, world.journal())
    for host in HOSTS:
        assert batches_with(world, host, "cat /s2/y") == 2  # its own probe, then verify
        assert not any("/s2/" in s for s in world.transport.commands_on(host)
                       if batch_probes(s) and "/s1/" in s)


@dataclass(frozen=True)
class KnownLocally(Operation[bool]):
    """An operation that knows its state without the host (its probe is None)."""

    op_id: str
    answer: bool
    touches: str = "/local"

    def fact(self, ctx: HostContext) -> Fact[bool]:
        return Fact.known(self.answer)

    def read(self, ctx: HostContext, probe: Probe) -> bool:
        assert probe == Probe("")
        return self.answer

    def done(self, ctx: HostContext, seen: bool) -> bool:
        return seen

    def verify(self, ctx: HostContext, seen: bool) -> bool:
        return True

    def apply(self, ctx: HostContext, seen: bool) -> list[Command]:
        return [Command(f"echo yes > {self.touches}")]


def test_a_step_whose_operations_are_known_locally_makes_no_round_trip(world: World) -> None:
    step = Step("l", "local", {"a": (KnownLocally("l", True),),
                               "b": (KnownLocally("l", False),)})
    world.engine().run(runbook(step), world.journal())
    assert world.transport.commands_on("a") == []
    assert world.transport.commands_on("b") == ["echo yes > /local"]  # no probe, no verify
    assert states(world.on_disk(), "l") == {"a": "ok", "b": "changed"}


def test_only_host_probes_go_into_the_batch(world: World) -> None:
    step = Step("m", "mixed", {"a": (KnownLocally("l", True), SetFile("x", "/x", "1"))})
    world.engine().run(runbook(step), world.journal())
    probes = [batch_probes(s) for s in world.transport.commands_on("a") if batch_probes(s)]
    assert [p[1] for p in probes if p] == [["cat /x"], ["cat /x"]]  # probe, then verify
    assert world.files("a") == {"/x": "1"}


@dataclass(frozen=True)
class CountsLines(Operation[int]):
    """Reads its probe into a number: done when the file has `lines` lines."""

    op_id: str
    path: str
    lines: int

    def fact(self, ctx: HostContext) -> Fact[int]:
        return Fact(f"cat {self.path}", self._count)

    def _count(self, probe: Probe) -> int:
        if probe.exited != 0:
            raise ValueError(f"{self.path} is missing")
        return len(probe.stdout.splitlines())

    def done(self, ctx: HostContext, seen: int) -> bool:
        assert isinstance(seen, int)
        return seen == self.lines

    def apply(self, ctx: HostContext, seen: int) -> list[Command]:
        assert isinstance(seen, int)
        return [Command(f"echo more >> {self.path}")]


def test_operations_decide_from_what_read_made_of_the_probe(world: World) -> None:
    world.hosts["a"].files["/n"] = "one\n"
    step = Step("n", "count", {"a": (CountsLines("n", "/n", 2),),
                               "b": (CountsLines("n", "/n", 2),)})
    with pytest.raises(StepFailed) as caught:
        world.engine().run(runbook(step), world.journal())
    assert world.files("a") == {"/n": "one\nmore"}
    # a read that cannot make sense of the host fails that host, naming the operation
    assert set(caught.value.failures) == {"b"}
    assert caught.value.reasons() == {"b": "n: /n is missing"}
    assert states(world.on_disk(), "n") == {"a": "changed", "b": "failed"}


def test_offline_plans_read_an_empty_probe(world: World) -> None:
    engine = Engine(FakeTransport(), {"a": node("a")}, "debian", world.events.append)
    engine.assume_profiles(("a",))
    (item,) = engine.plan(runbook(Step("n", "count", {"a": (CountsLines("n", "/n", 2),)})),
                          offline=True)
    # apply got the number read made of the empty probe (0 lines), not the Probe itself
    assert [[c.script for c in commands] for _, commands, _ in item.pending] == [
        ["echo more >> /n"]]


# -- structured failures --------------------------------------------------------------------


def test_step_failed_keeps_each_host_s_original_error(world: World) -> None:
    world.fail("b", "echo 1 > /s1/x", stderr="disk on fire", code=3)
    with pytest.raises(StepFailed) as caught:
        world.engine().run(runbook(TWO_STEPS.steps[0]), world.journal())
    error = caught.value.failures["b"]
    assert isinstance(error, CommandFailed)
    assert (error.host, error.exited, error.stderr) == ("b", 3, "disk on fire")
    assert error.result.command == "echo 1 > /s1/x"
    assert {h: o.state for h, o in caught.value.outcomes.items()} == {
        "a": "changed", "b": "failed", "c": "changed"}
    assert caught.value.reasons()["b"].startswith("command exited 3: echo 1 > /s1/x")
    assert "b: b:" not in str(caught.value)


def test_host_reason_drops_only_the_host_the_message_is_grouped_under() -> None:
    lost = TransportError("a", "connection lost")
    assert str(lost) == "a: connection lost"
    assert host_reason(lost) == host_reason(lost, "a") == "connection lost"
    assert host_reason(lost, "b") == "a: connection lost"  # a source host, say
    assert host_reason(HadeployError("no host here")) == "no host here"
    assert host_reason(ValueError("plain")) == "plain"


def test_command_failed_holds_its_result_and_shows_the_tail_of_stderr() -> None:
    result = Result("h", "exit 2", 2, "out", "\n".join(f"line {i}" for i in range(12)))
    with pytest.raises(CommandFailed) as caught:
        result.check("the step's command")
    error = caught.value
    assert error.result is result
    assert (error.host, error.command, error.exited, error.stdout) == (
        "h", "the step's command", 2, "out")
    assert str(error).splitlines() == ["h: command exited 2: the step's command",
                                       *(f"    line {i}" for i in range(4, 12))]


def test_a_failed_deferred_undo_is_a_step_failure_of_its_host(world: World) -> None:
    book = runbook(Step("s2", "service", each(HOSTS, RestartsForNewConfig("svc", "/svc", "up"))))
    world.engine().run(book, world.journal())
    world.restart()
    world.fail("b", "echo restarted >> /svc", stderr="unit failed")
    log = world.journal("rb", kind="rollback")
    with pytest.raises(StepFailed) as caught:
        world.engine().rollback([world.on_disk()], log)
    assert caught.value.step_id == f"{RUN_ID}/deferred"
    assert set(caught.value.failures) == {"b"}
    assert world.files("a")["/svc"] == "up\nrestarted"
    assert Journal.load(log.path).status == "failed"


# -- probes and facts -----------------------------------------------------------------------


def ctx_for(host: str = "a") -> HostContext:
    return HostContext(node(host), profile_for("debian"), "r", "s")


@dataclass(frozen=True)
class ShellProbe(Operation[Probe]):
    """An operation whose probe is any shell text (for the /bin/sh round trip)."""

    op_id: str
    script: str

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw(self.script)

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return True

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return []


def test_batch_probe_round_trip_with_real_sh() -> None:
    scripts = ["echo one; echo two", "printf 'no newline'", "exit 3", "echo oops >&2; true",
               "echo 'rc 7'; (exit 7)", "cat /nonexistent/file", "true"]
    ops = tuple(ShellProbe(f"p{i}", s) for i, s in enumerate(scripts))
    script = batch_probe(ops, ctx_for(), "tok123")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                         check=True)
    assert split_probe(out.stdout, len(ops), "tok123") == [
        Probe("one\ntwo\n", 0), Probe("no newline", 0), Probe("", 3), Probe("", 0),
        Probe("rc 7\n", 7), Probe("", 1), Probe("", 0)]
    # the FakeTransport helpers read the same framing
    assert batch_probes(script) == ("tok123", scripts)


def test_probes_marked_beside_run_at_once_with_real_sh_and_keep_their_frames(
        tmp_path: Path) -> None:
    """Each `beside` probe waits (bounded) for a file that the probe after it creates: run
    one after another, the first would give up. Their frames come out of the pipes after
    the others' yet each probe gets its own output and code; the script's own stdin goes to
    the other probes only, and the host is left as it was."""
    d = tmp_path
    scripts = [framing.beside(f"i=0; until [ -e {d}/b ] || [ $i -ge 50 ]; do sleep 0.1; "
                              f"i=$((i+1)); done; [ -e {d}/b ] && echo saw-b; exit 4"),
               framing.beside(f"touch {d}/b; i=0; until [ -e {d}/c ] || [ $i -ge 50 ]; do "
                              f"sleep 0.1; i=$((i+1)); done; [ -e {d}/c ] && echo saw-c"),
               f"read line; echo got-$line; touch {d}/c", "echo last"]
    ops = tuple(ShellProbe(f"p{i}", s) for i, s in enumerate(scripts))
    script = batch_probe(ops, ctx_for(), "tok9")
    out = subprocess.run(["/bin/sh", "-c", script], input="stdin-line\n", capture_output=True,
                         text=True, check=True)
    assert split_probe(out.stdout, len(ops), "tok9") == [
        Probe("saw-b\n", 4), Probe("saw-c\n", 0), Probe("got-stdin-line\n", 0),
        Probe("last\n", 0)]
    assert batch_probes(script) == ("tok9", scripts)
    assert sorted(p.name for p in d.iterdir()) == ["b", "c"]  # what the probes made, only
    # alone, a marked probe runs as it is
    alone = subprocess.run(["/bin/sh", "-c", framing.beside("echo alone")],
                           capture_output=True, text=True, check=True)
    assert alone.stdout == "alone\n"


def test_batch_answer_is_what_split_probe_reads() -> None:
    text = batch_answer("t0k", [(0, "a\n"), (2, ""), (0, "x")])
    assert split_probe(text, 3, "t0k") == [Probe("a\n", 0), Probe("", 2), Probe("x", 0)]


def test_split_probe_of_cut_off_output_reports_the_missing_probes_as_failed() -> None:
    text = batch_answer("t", [(0, "fine\n")])
    assert split_probe(text, 2, "t") == [Probe("fine\n", 0), Probe("", 255)]


def test_probe_that_breaks_the_whole_script_is_a_command_failure(world: World) -> None:
    world.transport.handlers.insert(0, lambda h, s, i: (2, "", "syntax error"))
    engine = world.engine()
    with pytest.raises(CommandFailed, match="probe"):
        engine.probe("a", (SetFile("x", "/x", "1"),), ctx_for())


def test_gather_facts_detects_each_host(world: World) -> None:
    answers = {"a": "id=debian\nlike=\nversion=12\ninit=systemd\n",
               "b": "id=centos\nlike=rhel fedora\nversion=6.10\ninit=sysv\n",
               "c": "id=rocky\nlike=rhel centos fedora\nversion=9.3\ninit=systemd\n"}
    transport = FakeTransport()
    transport.on(lambda h, s, i: (0, answers[h], ""))
    journal = world.journal()
    engine = Engine(transport, {h: node(h) for h in HOSTS}, "auto", world.events.append)
    engine.gather_facts(HOSTS, journal)
    assert {h: p.name for h, p in engine.profiles.items()} == {"a": "debian", "b": "el6",
                                                              "c": "el9"}
    assert engine.profiles["b"].init == "sysv"
    assert Journal.load(world.path).facts["c"] == {"platform": "el9", "init": "systemd"}


def test_gather_facts_failure_names_the_host_without_secrets(world: World) -> None:
    transport = FakeTransport()
    transport.on(lambda h, s, i: (1, "", f"sudo: password {SECRET} rejected") if h == "b"
                 else (0, "id=debian\ninit=systemd\n", ""))
    engine = Engine(transport, {h: node(h) for h in HOSTS}, "auto", world.events.append,
                    secrets={"SUDO": SECRET})
    with pytest.raises(StepFailed) as caught:
        engine.gather_facts(HOSTS)
    assert set(caught.value.failures) == {"b"}
    assert SECRET not in str(caught.value)


def test_engine_errors_are_hadeploy_errors() -> None:
    assert issubclass(Interrupted, HadeployError)
    assert issubclass(JournalError, HadeployError)


def test_fake_host_vocabulary() -> None:
    host = FakeHost("h", {"/a": "1\n"})
    assert host("other", "cat /a", None) is None
    assert host("h", "cat /a", None) == (0, "1\n", "")
    assert host("h", "cat /b", None) == (1, "", "cat: /b: No such file or directory\n")
    assert host("h", "echo x y > /b; echo more >> /b; rm -f /a", None) == (0, "", "")
    assert host.files == {"/b": "x y\nmore\n"}
    assert host("h", "echo bad >&2; exit 4\necho never", None) == (4, "", "bad\n")
    with pytest.raises(AssertionError, match="unknown command"):
        host("h", "apt-get install haproxy", None)


# -- the JSON events, as the README documents them ----------------------------------------------

COMMON_FIELDS = {"event", "run_id", "step", "host", "time"}
REQUIRED_FIELDS: dict[str, set[str]] = {
    "run-started": {"phase", "kind"},
    "step-started": {"title", "hosts"},
    "step-skipped": {"title", "reason"},
    "host-started": set(),
    "command": {"command", "exited", "duration"},
    "host-ok": {"duration"},
    "host-changed": {"duration"},
    "host-failed": {"error"},
    "host-rolled-back": set(),
    "step-finished": {"failed"},
    "run-finished": {"status"},
    "run-failed": {"status", "error"},
}


def _readme_rows() -> dict[str, str]:
    """README's event table: each kind (a row may name two) -> its fields column."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## JSON events", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            for kind in cells[0].replace("`", "").split(" / "):
                rows[kind] = cells[1]
    return rows


def test_json_events_carry_the_fields_the_readme_documents(world: World) -> None:
    world.fail("b", "echo 2 > /s2/y", stderr="disk on fire")
    with pytest.raises(StepFailed):
        world.engine().run(TWO_STEPS, world.journal())
    first = list(world.events)
    world.restart()  # then resume: s1 is skipped, s2 finishes on b
    world.engine().run(TWO_STEPS, world.on_disk())
    world.engine().rollback([world.on_disk()], world.journal("rb", kind="rollback"))
    emitted = [e.to_json() for e in first + world.events]
    rows = _readme_rows()

    kinds = {e["event"] for e in emitted}
    assert {"run-started", "step-started", "step-skipped", "command", "host-changed",
            "host-failed", "host-rolled-back", "step-finished", "run-failed",
            "run-finished"} - kinds == set()
    for event in emitted:
        json.loads(json.dumps(event))  # one valid JSON line each
        assert event["event"] in rows, f"{event['event']} is not in the README's event table"
        assert COMMON_FIELDS | REQUIRED_FIELDS[event["event"]] <= set(event), event
    for kind, fields in REQUIRED_FIELDS.items():
        assert all(f"`{f}`" in rows[kind] for f in fields), (kind, rows.get(kind))
    failed = next(e for e in emitted if e["event"] == "host-failed")
    assert failed["exited"] == 1 and "disk on fire" in failed["stderr"], failed


def test_a_host_the_first_step_leaves_out_is_probed_while_that_step_runs(world: World) -> None:
    """`c` has nothing to do in the first step: its probe (for its own first step, the
    later ones taken along) goes while `a` and `b` probe theirs, not after them, and its
    step then uses it. The barrier breaks, failing the run, if `c` waits its turn."""
    for host in HOSTS:
        world.hosts[host].files.update({"/s1/x": "1\n", "/s2/y": "2\n"})
    barrier = threading.Barrier(3, timeout=5)

    def meet(host: str, script: str) -> None:
        if batch_probes(script) is not None and host in HOSTS:
            barrier.wait()

    world.observe(meet)
    world.transport.probe_ahead = True
    steps = runbook(Step("s1", "first", each(("a", "b"), SetFile("x", "/s1/x", "1"))),
                    Step("s2", "second", each(HOSTS, SetFile("y", "/s2/y", "2"))))
    world.engine().run(steps, world.journal())
    assert states(world.on_disk(), "s2") == dict.fromkeys(HOSTS, "ok")
    probes = [[s for s in world.transport.commands_on(h) if batch_probes(s) is not None]
              for h in HOSTS]
    assert [len(p) for p in probes] == [1, 1, 1]  # one round trip each, s2's taken along
