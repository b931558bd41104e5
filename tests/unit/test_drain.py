"""Drained restarts: the balancer-side scripts under /bin/sh against a stand-in haproxy CLI,
and the operation's commands, record and undo as data."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy.app import build_runbook
from hadeploy.catalog import load_catalog
from hadeploy.engine.contexts import HostContexts
from hadeploy.errors import InventoryError
from hadeploy.facts import Probe
from hadeploy.facts.system import ServiceState
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal
from hadeploy.ops import Balancers, DrainedRestart, HostContext, ServiceRunning
from hadeploy.ops.drain import NO_SOCAT, _set_state, drain_script, ready_script, undo_drained
from hadeploy.platforms import profile_for
from hadeploy.runbook.drains import build_restart_runbook
from tests.unit.controller_inventories import Inventories, families
from tests.unit.haproxy_cli import ANOTHER_UP, LBS, balancers, in_env


def test_drain_sets_drain_then_waits_until_the_sessions_of_that_server_end(
        cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text(ANOTHER_UP)
    Path(cli["STAT_ROWS"]).write_text("3\n1\n0\n")
    done = in_env(cli, drain_script(balancers(cli), "ctl1"))
    assert done.returncode == 0, done.stderr
    log = Path(cli["LOG"]).read_text().splitlines()
    assert log == ["show info", "show servers state", "set server glance-api/ctl1 state drain",
                   *["show stat"] * 3]
    assert done.stderr == ""


def test_drain_goes_ahead_after_its_bound_and_says_how_many_sessions_are_cut(
        cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text(ANOTHER_UP)
    Path(cli["STAT_ROWS"]).write_text("2\n")
    done = in_env(cli, drain_script(balancers(cli), "ctl1"))
    assert done.returncode == 0
    assert done.stderr.strip() == "ctl1 still has sessions after 1 s; going on anyway: 2"


@pytest.mark.parametrize("others", [
    "", "3 glance-api 2 ctl2 198.18.4.22 0 0\n", "3 glance-api 2 ctl2 198.18.4.22 2 8\n",
    "3 other-api 2 ctl2 198.18.4.22 2 0\n"])
def test_drain_waits_for_another_server_to_take_the_traffic_then_goes_ahead(
        cli: dict[str, str], others: str) -> None:
    """None, one down, one drained, one in another backend: none can take glance's traffic."""
    Path(cli["STATE"]).write_text("3 glance-api 1 ctl1 198.18.4.21 2 0\n" + others)
    Path(cli["STAT_ROWS"]).write_text("0\n")
    done = in_env(cli, drain_script(balancers(cli), "ctl1"))
    assert done.returncode == 0
    assert done.stderr.strip() == ("no other server is UP in every one of glance-api after 1 s; "
                                   "draining ctl1 anyway")
    assert "set server glance-api/ctl1 state drain" in Path(cli["LOG"]).read_text()


def test_a_server_haproxy_does_not_know_fails_with_haproxy_s_answer(
        cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text(ANOTHER_UP)
    Path(cli["SET_ANSWER"]).write_text("No such server.\n")
    done = in_env(cli, drain_script(balancers(cli), "ctl9"))
    assert done.returncode == 1
    assert done.stderr.strip() == ("haproxy refused `set server glance-api/ctl9 state drain`: "
                                   "No such server.")


def test_without_socat_the_script_says_what_to_do(cli: dict[str, str]) -> None:
    bare = {**cli, "PATH": "/usr/bin:/bin"}
    assert in_env(bare, "command -v socat").returncode != 0
    done = in_env(bare, drain_script(balancers(cli), "ctl1"))
    assert (done.returncode, done.stderr.strip()) == (1, NO_SOCAT)


@pytest.mark.parametrize("script", [drain_script, ready_script])
@pytest.mark.parametrize("haproxy", ["socket missing", "socket refuses"])
def test_a_balancer_whose_haproxy_is_down_is_skipped_saying_so(
        cli: dict[str, str], script: Callable[[Balancers, str], str], haproxy: str) -> None:
    """A killed haproxy (as in a failover) sends no traffic: a rollback or restart goes on."""
    if haproxy == "socket missing":
        lbs = Balancers(LBS.hosts, cli["SOCK"] + ".gone", LBS.backends, 1, 1)
    else:
        lbs = balancers(cli)
        refusing = Path(cli["LOG"]).parent / "bin" / "socat"
        refusing.write_text("#!/bin/sh\necho 'E connect(): Connection refused' >&2\nexit 1\n")
    done = in_env(cli, script(lbs, "ctl1"))
    assert done.returncode == 0, done.stderr
    assert "haproxy is not running on this balancer" in done.stderr
    assert "nothing to drain or make ready here" in done.stderr
    assert Path(cli["LOG"]).read_text() == ""  # no set/show command reached anything


def test_ready_waits_until_running_in_every_backend_then_sets_ready(
        cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text("3 glance-api 1 ctl1 198.18.4.21 2 8\n"
                                  "3 glance-api 2 ctl2 198.18.4.22 0 0\n")
    done = in_env(cli, ready_script(balancers(cli), "ctl1"))
    assert done.returncode == 0, done.stderr
    assert Path(cli["LOG"]).read_text().splitlines() == [
        "show info", "show servers state", "set server glance-api/ctl1 state ready"]


def test_ready_past_its_bound_still_sets_ready_and_fails_saying_so(cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text("3 glance-api 1 ctl1 198.18.4.21 0 8\n")
    done = in_env(cli, ready_script(balancers(cli), "ctl1"))
    assert done.returncode == 1
    assert Path(cli["LOG"]).read_text().splitlines()[-1] == \
        "set server glance-api/ctl1 state ready"
    assert done.stderr.strip() == (
        "haproxy does not see ctl1 UP in glance-api after 1 s (running/found: 0 1); it is "
        "set ready: haproxy sends it traffic once its checks pass")


def _ctx(changed: frozenset[str] = frozenset()) -> HostContext:
    node = Node(name="ctl1", address=IPv4Address("198.18.4.21"))
    return HostContext(node=node, profile=profile_for("debian", "sysv"), run_id="r",
                       step_id="ctl.glance.services", changed_steps=changed)


SERVICE = ServiceRunning("service:glance-api", "glance-api", (),
                         frozenset({"ctl.glance.vip-keys"}), wait_seconds=30)
RUNNING = Probe("enabled\nrunning\n")


def test_only_a_restart_of_a_running_daemon_is_drained() -> None:
    op = DrainedRestart("service:glance-api", SERVICE, LBS, "true")
    ctx = _ctx(frozenset({"ctl.glance.vip-keys"}))
    commands = op.apply(ctx, op.read(ctx, RUNNING))
    assert [c.on for c in commands] == ["lb1", "lb2", None, None, "lb1", "lb2"]
    assert commands[0].notice.startswith("lb1: draining ctl1 in glance-api")
    record = op.intent(ctx, op.read(ctx, RUNNING))
    assert record["kind"] == "drained-service" and record["server"] == "ctl1"
    # a start (nothing served yet) is not drained, only made ready where haproxy has the
    # server (a rollback's drain may have left it drained); nothing changed: nothing to do
    stopped = Probe("disabled\nstopped\n")
    start = op.apply(ctx, op.read(ctx, stopped))
    assert [c.on for c in start] == [None, None, "lb1", "lb2"]
    assert start[2].script.endswith(_set_state(LBS, "ctl1", "ready"))
    # ...but recorded with the balancers, so that the rollback's stop is drained
    record = op.intent(ctx, op.read(ctx, stopped))
    assert record["kind"] == "drained-service" and not record["was_running"]
    undo = undo_drained(ctx, record)
    assert [c.on for c in undo] == ["lb1", "lb2", None, None]
    assert "is in none of" in undo[0].script and "glance-api stop" in undo[2].script
    assert op.done(_ctx(), op.read(_ctx(), RUNNING))


def test_a_daemon_an_interrupted_attempt_started_is_not_restarted_only_made_ready(
        tmp_path: Path) -> None:
    """A run killed right after it started a daemon (its intent says it was stopped) resumes
    with the daemon running: it already runs what the earlier steps changed, so no restart
    (one interrupts a daemon that may still be starting), only what follows the start."""
    op = DrainedRestart("service:glance-api", SERVICE, LBS, "true")
    changed = frozenset({"ctl.glance.vip-keys"})
    stopped = Probe("enabled\nstopped\n")
    record = op.intent(_ctx(changed), op.read(_ctx(changed), stopped))
    journal = Journal(tmp_path / "run.json", "r", "controllers", "deploy", "hosts.toml", "fp",
                      0.0)
    for step in ("ctl.glance.vip-keys", "ctl.glance.services"):
        journal.ensure_step(step, step, ["ctl1"])
    journal.step("ctl.glance.vip-keys").hosts["ctl1"].state = "changed"
    interrupted = journal.step("ctl.glance.services").hosts["ctl1"]
    interrupted.state = "running"
    interrupted.changes.append({"op": op.op_id, "title": op.title(), "record": record})
    contexts = HostContexts({"ctl1": _ctx().node}, "debian", {})
    contexts.apply_facts({"ctl1": {"platform": "debian", "init": "sysv"}})
    ctx = contexts.context("ctl.glance.services", "ctl1", journal)
    assert ctx.earlier == {op.op_id: record} and "ctl.glance.vip-keys" in ctx.changed_steps
    state = op.read(ctx, RUNNING)
    assert not op.done(ctx, state)  # the attempt may not have made the server ready
    commands = op.apply(ctx, state)
    assert [c.on for c in commands] == ["lb1", "lb2"]
    assert all(c.script.endswith(_set_state(LBS, "ctl1", "ready")) for c in commands)
    assert "restart" not in " ".join(c.script for c in commands)
    assert op.verify(ctx, state)
    # not enabled yet (killed between the enable and the start): enabled, not restarted
    disabled = op.apply(ctx, op.read(ctx, Probe("disabled\nrunning\n")))
    assert [c.on for c in disabled] == [None, "lb1", "lb2"]
    assert "restart" not in disabled[0].script
    # without the balancers, the service alone is done: nothing to restart
    assert SERVICE.done(ctx, state) and SERVICE.verb(ctx, state) == ""
    # found stopped (the start died, or never ran): started again, as in a first attempt
    assert SERVICE.verb(ctx, op.read(ctx, stopped)) == "start"
    # an attempt that found it running (a restart for new keys) is repeated: it is not
    # known whether that restart ran before the run was interrupted
    restarted = op.intent(_ctx(changed), op.read(_ctx(changed), RUNNING))
    interrupted.changes[0]["record"] = restarted
    again = contexts.context("ctl.glance.services", "ctl1", journal)
    assert [c.on for c in op.apply(again, op.read(again, RUNNING))] == \
        ["lb1", "lb2", None, None, "lb1", "lb2"]


def test_always_restarts_a_running_daemon_and_leaves_a_stopped_one() -> None:
    service = ServiceRunning("service:glance-api", "glance-api", (), restart_only=True)
    op = DrainedRestart("service:glance-api", service, LBS, "true", always=True)
    assert not op.done(_ctx(), op.read(_ctx(), RUNNING))
    assert "restart, drained" in op.preview(_ctx(), op.read(_ctx(), RUNNING))
    assert op.done(_ctx(), op.read(_ctx(), Probe("enabled\nstopped\n")))


def test_the_rollback_restart_is_drained_too_and_runs_last() -> None:
    op = DrainedRestart("service:glance-api", SERVICE, LBS, "true")
    ctx = _ctx(frozenset({"ctl.glance.vip-keys"}))
    record = op.intent(ctx, op.read(ctx, RUNNING))
    undo = undo_drained(_ctx(), record)
    assert [c.on for c in undo] == ["lb1", "lb2", None, None, "lb1", "lb2"]
    assert all(c.deferred for c in undo)
    assert "glance-api restart" in undo[2].script


def test_the_restart_phase_is_one_drained_step_per_service_and_controller(
        inventories: Inventories) -> None:
    inv = inventories("modern", "debian", "dedicated")
    runbook = build_restart_runbook(inv, families(inv), ("glance",))
    controllers = [c.name for c in inv.controllers]
    assert runbook.phase == "restart"
    assert [s.id for s in runbook.steps] == [f"restart.glance.{c}" for c in controllers]
    for step, name in zip(runbook.steps, controllers, strict=True):
        (op,) = step.ops[name]
        assert isinstance(op, DrainedRestart) and op.always
        assert op.balancers.hosts == tuple(n.name for n in inv.lbs)
        assert op.balancers.backends == (inv.haproxy.backend_name.replace("{proxy}", "glance"),)
    everything = build_restart_runbook(inv, families(inv), ())
    assert {s.id.split(".")[1] for s in everything.steps} == {
        s for s in inv.services if not load_catalog()[s].lb_only}


def test_the_restart_phase_restarts_a_services_running_workers_too_in_the_background(
        inventories: Inventories) -> None:
    inv = inventories("modern", "debian", "dedicated")
    step = build_restart_runbook(inv, families(inv), ("nova",)).steps[0]
    (name,) = step.ops
    conductor, scheduler, *apis = step.ops[name]
    running = ServiceState(enabled=True, running=True)
    for worker in (conductor, scheduler):
        assert isinstance(worker, ServiceRunning) and worker.background
        ctx = _ctx()
        assert not worker.done(ctx, running)  # nothing changed, and still restarted
        assert "restart" in worker.apply(ctx, running)[-1].shown()
        assert worker.done(ctx, ServiceState(enabled=True, running=False))  # stays stopped
    assert [op.service.service for op in apis if isinstance(op, DrainedRestart)] == [
        "nova-api", "nova-api-metadata"]


def test_restart_refuses_a_service_the_inventory_does_not_scale_out(
        inventories: Inventories) -> None:
    inv = inventories("modern", "debian", "dedicated")
    with pytest.raises(InventoryError, match="--service galera: not a scaled-out service"):
        build_runbook(inv, "restart", False, {n.name: profile_for("debian") for n in inv.nodes},
                      ("galera",))
