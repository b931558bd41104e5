"""examples/colocated.toml, the modern Debian inventory of guide 2 an operator starts from:
it loads, its haproxy.cfg passes the real `haproxy -c`, and both phases plan every API's bind
to its node instead of refusing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from hadeploy.render import render_haproxy_cfg
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.runbook.lb import build_lb_runbook
from tests.unit.controller_inventories import families
from tests.unit.examples import ROOT

EXAMPLE = ROOT / "examples" / "colocated.toml"
HAPROXY = shutil.which("haproxy")
#: The APIs of a modern Debian control plane: each is bound to its node's own address.
APIS = ("keystone", "glance", "placement", "nova", "novnc", "neutron", "cinder", "heat",
        "swift", "horizon")


def test_the_example_is_modern_debian_colocated_with_every_api() -> None:
    inv = load_inventory(EXAMPLE)
    assert (inv.release, inv.platform, inv.topology) == ("modern", "debian", "colocated")
    assert set(APIS) < set(inv.services) and {"galera", "rabbitmq"} < set(inv.services)
    assert all(c.api_bind == c.address for c in inv.controllers)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_its_haproxy_cfg_passes_the_real_haproxy(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(load_inventory(EXAMPLE)))
    assert HAPROXY is not None
    run = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_deploy_lb_binds_every_api_of_the_original_before_haproxy() -> None:
    inv = load_inventory(EXAMPLE)
    ids = [s.id for s in build_lb_runbook(inv, families=families(inv)).steps]
    assert [i for i in ids if i.startswith("lb.bind.")] == [f"lb.bind.{s}" for s in APIS]
    assert ids.index("lb.api-restart") < ids.index("lb.ports-free") < ids.index("lb.haproxy-cfg")


def test_deploy_controllers_binds_the_uwsgi_and_apache_apis_on_every_node() -> None:
    inv = load_inventory(EXAMPLE)
    ids = {s.id for s in build_controllers_runbook(inv, families=families(inv)).steps}
    for service in ("keystone", "placement", "nova", "neutron", "cinder", "heat", "horizon"):
        assert f"ctl.{service}.bind" in ids, service
