"""Retiring a controller (`retire = true`): the inventory's rules, haproxy.cfg without it, the
`ctl.retire` step's operations, their commands, record and undo, and the balancer and
controller scripts under /bin/sh against stand-ins for socat and ss."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hadeploy.app import phase_hosts
from hadeploy.errors import InventoryError
from hadeploy.facts import Probe
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.ops.drain import Balancers, drain_script, ready_script
from hadeploy.ops.retire import ServiceRetired, connections_end_script, undo_retired
from hadeploy.ops.undo import UNDO
from hadeploy.platforms import profile_for
from hadeploy.render import render_haproxy_cfg
from hadeploy.runbook.controllers import build_controllers_runbook
from tests.unit.controller_inventories import ctx_for, families, inventory_text
from tests.unit.examples import edit
from tests.unit.haproxy_cli import ANOTHER_UP, balancers, in_env

RETIRED = "rhos6-node3"
NODE3 = 'name = "rhos6-node3"\n'


def _load(tmp_path: Path, text: str) -> Inventory:
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    return load_inventory(path)


def _retiring(tmp_path: Path, topology: str = "dedicated") -> Inventory:
    text = inventory_text("modern", "debian", topology, ("keystone", "glance"))
    return _load(tmp_path, edit(text, (NODE3, NODE3 + "retire = true\n")))


def test_a_retired_controller_is_in_no_backend_but_still_a_host_of_the_phase(
        tmp_path: Path) -> None:
    inv = _retiring(tmp_path)
    assert [n.name for n in inv.retired] == [RETIRED]
    assert RETIRED not in {n.name for n in inv.controllers}
    assert RETIRED not in render_haproxy_cfg(inv)
    assert RETIRED in phase_hosts(inv, "controllers")
    assert RETIRED not in phase_hosts(inv, "lb")


@pytest.mark.parametrize(("change", "message"), [
    (('name = "rhos6-node1"\n', 'name = "rhos6-node1"\nretire = true\n'),
     "controller rhos6-node1.retire: the original cannot be retired"),
    (('name = "rhos6-lb1"\n', 'name = "rhos6-lb1"\nretire = true\n'),
     "lb rhos6-lb1.retire: only a controller can be retired; to remove a load balancer, "
     "delete its [[lb]] table"),
    ((NODE3, NODE3 + "retire = 1\n"), "retire"),
])
def test_what_cannot_be_retired_is_refused_naming_the_key(
        tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = inventory_text("modern", "debian", "dedicated", ("keystone", "glance"))
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, edit(text, change))
    assert message in str(caught.value)


def test_colocated_controllers_are_not_retired(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        _retiring(tmp_path, "colocated")
    assert ("controller rhos6-node3.retire: in the colocated topology every controller is also "
            "a balancer") in str(caught.value)


def test_the_retire_step_comes_last_and_stops_each_daemon_once(tmp_path: Path) -> None:
    inv = _retiring(tmp_path)
    runbook = build_controllers_runbook(inv, families(inv))
    assert runbook.steps[-1].id == "ctl.retire"
    assert all(RETIRED not in s.hosts for s in runbook.steps[:-1])
    ops = runbook.steps[-1].ops[RETIRED]
    assert [op.op_id for op in ops] == ["retire:keystone", "retire:glance-api"]
    keystone, glance = ops
    assert isinstance(keystone, ServiceRetired) and isinstance(glance, ServiceRetired)
    assert keystone.ports == (5000,) and glance.ports == (9292,)
    assert keystone.sources == tuple(str(n.address) for n in inv.lbs)
    assert keystone.balancers is not None and keystone.balancers.hosts == tuple(
        n.name for n in inv.lbs)
    assert build_controllers_runbook(
        _load(tmp_path, inventory_text("modern", "debian", "dedicated", ("keystone",))),
        families(inv)).steps[-1].id != "ctl.retire"


RUNNING = Probe("enabled\nrunning\n")
STOPPED = Probe("disabled\nstopped\n")


def test_a_running_service_is_drained_waited_out_stopped_and_disabled(tmp_path: Path) -> None:
    inv = _retiring(tmp_path)
    (op, _) = build_controllers_runbook(inv, families(inv)).steps[-1].ops[RETIRED]
    ctx = ctx_for(inv, RETIRED, profile_for("debian", "sysv"), "ctl.retire")
    state = op.read(ctx, RUNNING)
    assert not op.done(ctx, state)
    commands = op.apply(ctx, state)
    assert [c.on for c in commands] == ["rhos6-lb1", "rhos6-lb2", "rhos6-lb3", None, None, None]
    assert "ss -Htn state established" in commands[3].script
    assert commands[4].script.startswith("service keystone stop")
    assert commands[5].script == "update-rc.d keystone disable >/dev/null >&2"
    assert "stop (drained on rhos6-lb1, rhos6-lb2, rhos6-lb3 first" in op.preview(ctx, state)
    record = op.intent(ctx, state)
    assert record["kind"] == "retired-service" and record["server"] == RETIRED
    assert op.done(ctx, op.read(ctx, STOPPED))
    # stopped but still enabled at boot: only disabled, nothing drained
    enabled = op.read(ctx, Probe("enabled\nstopped\n"))
    assert [c.summary for c in op.apply(ctx, enabled)] == ["update-rc.d keystone disable "
                                                          ">/dev/null"]


def test_the_undo_enables_starts_and_makes_ready_where_haproxy_still_has_it(
        tmp_path: Path) -> None:
    inv = _retiring(tmp_path)
    (op, _) = build_controllers_runbook(inv, families(inv)).steps[-1].ops[RETIRED]
    ctx = ctx_for(inv, RETIRED, profile_for("debian", "sysv"), "ctl.retire")
    record = op.intent(ctx, op.read(ctx, RUNNING))
    assert UNDO["retired-service"] is undo_retired
    undo = undo_retired(ctx, record)
    assert [c.on for c in undo] == [None, None, "rhos6-lb1", "rhos6-lb2", "rhos6-lb3"]
    assert undo[0].script == ("if [ -x /etc/init.d/keystone ]; then update-rc.d keystone "
                              "defaults >/dev/null && update-rc.d keystone enable >/dev/null "
                              ">&2; fi")
    assert undo[1].script.startswith("[ -x /etc/init.d/keystone ] || exit 0; "
                                     "service keystone start")
    assert "is in none of" in undo[2].script  # where deploy-lb took it out, nothing to do
    was_stopped = op.intent(ctx, op.read(ctx, Probe("disabled\nstopped\n")))
    assert undo_retired(ctx, was_stopped) == []


def test_drain_and_ready_skip_a_balancer_whose_haproxy_no_longer_has_the_server(
        cli: dict[str, str]) -> None:
    Path(cli["STATE"]).write_text(ANOTHER_UP)
    for script in (drain_script, ready_script):
        Path(cli["LOG"]).write_text("")
        done = in_env(cli, script(balancers(cli), "ctl1", if_listed=True))
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == ("ctl1 is in none of glance-api on this balancer "
                                       "(deploy-lb took it out): nothing to do here")
        assert Path(cli["LOG"]).read_text().splitlines() == ["show info", "show servers state"]
    # where it is still listed, it is drained as for a restart
    Path(cli["STATE"]).write_text("3 glance-api 1 ctl1 198.18.4.21 2 0\n" + ANOTHER_UP)
    Path(cli["STAT_ROWS"]).write_text("0\n")
    Path(cli["LOG"]).write_text("")
    done = in_env(cli, drain_script(balancers(cli), "ctl1", if_listed=True))
    assert done.returncode == 0, done.stderr
    assert "set server glance-api/ctl1 state drain" in Path(cli["LOG"]).read_text()


# `ss -Htn state established FILTER` as the controller would answer: one line per call
# from $SS_ROWS (connection rows separated by `|`), the last line repeated.
FAKE_SS = """#!/bin/sh
row=$(head -n 1 "$SS_ROWS"); [ "$(wc -l < "$SS_ROWS")" -gt 1 ] && sed -i 1d "$SS_ROWS"
printf '%s' "$row" | tr '|' '\\n'
"""


def _ss_env(tmp_path: Path, rows: str) -> dict[str, str]:
    bin_dir = tmp_path / "ssbin"
    bin_dir.mkdir()
    (bin_dir / "ss").write_text(FAKE_SS)
    (bin_dir / "ss").chmod(0o755)
    (tmp_path / "rows").write_text(rows)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SS_ROWS": str(tmp_path / "rows")}


LB1 = "0 0 198.18.4.23:5000 198.18.4.11:40001"
CLIENT = "0 0 198.18.4.23:5000 198.18.4.99:40002"


@pytest.mark.parametrize(("rows", "left"), [
    (f"{LB1}|{CLIENT}\n{LB1}\n{CLIENT}\n", ""),  # the balancer's connection ends
    (f"{LB1}\n", "connections from the balancers to ports 5000 still open after 1 s; "
                 "stopping anyway: 1"),
])
def test_the_controller_waits_until_no_balancer_holds_a_connection(
        tmp_path: Path, rows: str, left: str) -> None:
    script = connections_end_script((5000,), ("198.18.4.11", "198.18.4.12"), 1)
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env=_ss_env(tmp_path, rows))
    assert (done.returncode, done.stderr.strip()) == (0, left)


def test_the_balancers_record_survives_the_journal(tmp_path: Path) -> None:
    lbs = Balancers(("lb1",), "/s", ("b",), 3, 4)
    assert Balancers.from_record({"hosts": ["lb1"], "socket": "/s", "backends": ["b"],
                                  "drain_seconds": 3, "up_seconds": 4}) == lbs
