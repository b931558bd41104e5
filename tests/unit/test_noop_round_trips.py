"""A no-op `deploy-controllers` of the whole control plane, over a fake transport: how many
round trips the engine's scheduling makes per host once every operation reads as done.

The bench measures the same on real hosts (bench/time_to_ha.py, issue 17); this guards the
look-ahead from quietly losing a step again (a tree copy's probe was once left out of it,
and each of the ten copies cost a round trip on every new controller and on the original).
"""

from __future__ import annotations

import types
from collections import Counter
from pathlib import Path
from typing import Any

from hadeploy.engine import Engine
from hadeploy.inventory import load_inventory
from hadeploy.journal import Journal, now
from hadeploy.ops.base import HostContext
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.testing import FakeTransport, batch_answer, batch_probes
from hadeploy.transport.ssh import wrap
from lab.inventory import lab_inventory_text
from lab.network import SUBNET
from lab.openstack.planes import FULL_PLANE_SERVICES

# in this process's lab slot, as the inventory's VIP is (CI's workers run in slots 0 and 1)
ADDRESSES = {"lb1": f"{SUBNET}.11", "lb2": f"{SUBNET}.12", "lb3": f"{SUBNET}.13",
             "ctl1": f"{SUBNET}.21", "ctl2": f"{SUBNET}.22", "ctl3": f"{SUBNET}.23"}


def _done(ctx: HostContext, seen: Any) -> bool:
    return True


def _read(ctx: HostContext, probe: Any) -> None:
    return None


def test_a_no_op_scale_out_of_the_whole_plane_costs_one_batch_per_host(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("key")
    (tmp_path / "known_hosts").write_text("hosts")
    lab = types.SimpleNamespace(
        hosts={h: types.SimpleNamespace(address=a) for h, a in ADDRESSES.items()},
        identity_file=tmp_path / "id", known_hosts=tmp_path / "known_hosts")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(lab_inventory_text(lab, services=FULL_PLANE_SERVICES,  # type: ignore[arg-type]
                                        rc_files=[("ctl1", "/root/admin-openrc")]))
    inv = load_inventory(hosts)
    nodes = {n.name: n for n in (*inv.controllers, *inv.balancers)}
    runbook = build_controllers_runbook(inv, dict.fromkeys(nodes, "debian"))
    # Every operation reads as done, whatever its probe printed: a no-op.
    for step in runbook.steps:
        for ops in step.ops.values():
            for op in ops:
                object.__setattr__(op, "read", _read)
                object.__setattr__(op, "done", _done)
    transport = FakeTransport(probe_ahead=True)

    def answer(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        batch = batch_probes(script)
        if batch is None:
            return 0, "", ""
        token, probes = batch
        return 0, batch_answer(token, [(0, "") for _ in probes]), ""

    transport.on(answer)
    engine = Engine(transport, nodes, "debian", lambda event: None)
    engine.apply_facts({name: {"platform": "debian", "init": "systemd"} for name in nodes})
    run_id = "20261203-000000-000-controllers-deploy"
    engine.run(runbook, Journal(tmp_path / "runs" / f"{run_id}.json", run_id, "controllers",
                                "deploy", str(hosts), "fingerprint", now()))

    trips = Counter(host for host, _ in transport.calls)
    # each new controller: one batch, every later step's probe along; the original: that
    # batch's reads of its ten trees in one, and its own batch
    assert trips == {"ctl1": 2, "ctl2": 1, "ctl3": 1}, trips
    assert all(batch_probes(script) for _, script in transport.calls)
    # sshd passes the command, as sudo runs it, to the login shell as one argument: the
    # kernel refuses one of more than MAX_ARG_STRLEN (128 KiB); keep a wide margin
    largest = max(len(wrap(script, sudo=True)) for _, script in transport.calls)
    assert largest < 96 * 1024, largest
