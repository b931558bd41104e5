"""Binding each API to its controller's own address (guide 2, co-located), per Debian 12 package.

The expectations are read from Debian 12's packages (bookworm, 2026): every API below
except glance-api and swift-proxy is started by an openstack-pkg-tools init script as
`uwsgi --http-socket :PORT --ini INI`, after which the script sources /etc/default/<NAME>
(NAME is the script's, e.g. neutron-api's is neutron-server); glance-api and swift-proxy run
their own servers, which read bind_host / bind_ip; Horizon is an apache2 site (Listen 80).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hadeploy.catalog import load_catalog
from hadeploy.facts.files import FileState
from hadeploy.facts.network import Listening
from hadeploy.facts.system import ServiceState
from hadeploy.inventory import Inventory
from hadeploy.ops import FileEdit, Requirement, ServiceRunning
from hadeploy.ops.undo import UNDO
from hadeploy.platforms import profile_for
from hadeploy.render.binds import bind_apache_listen, bind_uwsgi_default
from hadeploy.runbook.binds import bind_edits, original_bind_ops
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.runbook.lb import build_lb_runbook
from tests.unit.controller_inventories import (
    CONTROLLERS,
    Inventories,
    ctx_for,
    families,
    inventory_text,
)
from tests.unit.examples import ROOT

NODE = "rhos6-node2"
ADDRESS = "192.168.1.222"
# daemon: (catalog service, /etc/default file, port, the script's --ini)
UWSGI = {
    "keystone": ("keystone", "/etc/default/keystone", 5000, "/etc/keystone/keystone-uwsgi.ini"),
    "nova-api": ("nova", "/etc/default/nova-api", 8774, "/etc/nova/nova-api-uwsgi.ini"),
    "nova-api-metadata": ("nova", "/etc/default/nova-api-metadata", 8775,
                          "/etc/nova/nova-api-metadata-uwsgi.ini"),
    "neutron-api": ("neutron", "/etc/default/neutron-server", 9696,
                    "/etc/neutron/neutron-api-uwsgi.ini"),
    "cinder-api": ("cinder", "/etc/default/cinder-api", 8776, "/etc/cinder/cinder-api-uwsgi.ini"),
    "heat-api": ("heat", "/etc/default/heat-api", 8004, "/etc/heat/heat-api-uwsgi.ini"),
    "heat-api-cfn": ("heat", "/etc/default/heat-api-cfn", 8000,
                     "/etc/heat/heat-api-cfn-uwsgi.ini"),
}
# daemon: (catalog service, config file, section, key)
INI = {
    "glance-api": ("glance", "/etc/glance/glance-api.conf", "DEFAULT", "bind_host"),
    "swift-proxy": ("swift", "/etc/swift/proxy-server.conf", "DEFAULT", "bind_ip"),
}
# /etc/apache2/ports.conf as apache2 2.4 ships it in Debian 12
PORTS_CONF = """# If you just change the port or add more ports here, you will likely also
# have to change the VirtualHost statement in
# /etc/apache2/sites-enabled/000-default.conf

Listen 80

<IfModule ssl_module>
\tListen 443
</IfModule>
"""


@pytest.fixture
def debian(inventories: Inventories) -> Inventory:
    return inventories("modern", "debian", "colocated")


def _desired(op: FileEdit, inv: Inventory, text: str | None) -> bytes:
    ctx = ctx_for(inv, NODE, profile_for("debian", "sysv"))
    state = (FileState(False, "", "", "", "", None) if text is None else
             FileState(True, "root", "root", "0644", hashlib.sha256(text.encode()).hexdigest(),
                       text.encode()))
    want = op.desired(ctx, state)
    assert want is not None
    return want[0]


def _edit_for(inv: Inventory, service: str, path: str) -> FileEdit:
    ops = bind_edits(inv, load_catalog()[service], "debian", inv.node(NODE))
    (op,) = [o for o in ops if o.path == path]
    return op


@pytest.mark.parametrize("daemon", sorted(UWSGI))
def test_debian_uwsgi_api_binds_through_its_default_file(debian: Inventory, daemon: str,
                                                          tmp_path: Path) -> None:
    service, path, port, ini = UWSGI[daemon]
    op = _edit_for(debian, service, path)
    text = _desired(op, debian, None).decode()
    assert text.endswith(f'DAEMON_ARGS="--http-socket {ADDRESS}:{port} --ini {ini}"\n')
    # What the init script does: compute its own DAEMON_ARGS, then source the file.
    default = tmp_path / "default"
    default.write_text(text)
    script = (f'DAEMON_ARGS="--http-socket :{port} --ini {ini}"\n'
              f'[ -r {default} ] && . {default}\nprintf %s "$DAEMON_ARGS"')
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == f"--http-socket {ADDRESS}:{port} --ini {ini}"


@pytest.mark.parametrize("daemon", sorted(INI))
def test_debian_eventlet_api_binds_through_its_own_config(debian: Inventory,
                                                           daemon: str) -> None:
    service, path, section, key = INI[daemon]
    catalog = load_catalog()
    assert not catalog[service].variant("debian", "modern").binds
    ops = original_bind_ops(debian, catalog[service], "debian")
    (op,) = [o for o in ops if o.path == path]
    original = debian.original
    text = f"[{section}]\n{key} = 0.0.0.0\n"
    ctx = ctx_for(debian, original.name, profile_for("debian", "sysv"))
    state = FileState(True, "root", "root", "0640", hashlib.sha256(text.encode()).hexdigest(),
                      text.encode())
    want = op.desired(ctx, state)
    assert want is not None
    assert want[0].decode() == f"[{section}]\n{key} = {original.api_bind}\n"


def test_novncproxy_binds_through_nova_conf(debian: Inventory) -> None:
    """nova-consoleproxy's init script runs nova-novncproxy --config-file=/etc/nova/nova.conf
    (no uwsgi): [vnc] novncproxy_host is its listen address."""
    runbook = build_controllers_runbook(debian, families(debian), only=("novnc",))
    step = {s.id: s for s in runbook.steps}["ctl.novnc.host-keys"]
    (op,) = step.ops[NODE]
    assert isinstance(op, FileEdit) and op.path == "/etc/nova/nova.conf"
    text = "[vnc]\nnovncproxy_host = 0.0.0.0\nserver_proxyclient_address = 1.2.3.4\n"
    assert _desired(op, debian, text).decode() == text.replace(
        "novncproxy_host = 0.0.0.0", f"novncproxy_host = {ADDRESS}")


def test_horizon_on_debian_binds_apache_listen(debian: Inventory) -> None:
    op = _edit_for(debian, "horizon", "/etc/apache2/ports.conf")
    assert op.missing_ok and not op.create
    assert _desired(op, debian, PORTS_CONF).decode() == PORTS_CONF.replace(
        "\nListen 80\n", f"\nListen {ADDRESS}:80\n")


def test_an_existing_daemon_args_keeps_its_other_arguments() -> None:
    lab = ('# lab\nDAEMON_ARGS="--http-socket 0.0.0.0:5000 --ini /etc/keystone/k.ini"\n')
    assert bind_uwsgi_default(lab, "198.18.0.11", 5000, "/unused") == (
        "# lab\nDAEMON_ARGS='--http-socket 198.18.0.11:5000 --ini /etc/keystone/k.ini'\n")
    https = 'DAEMON_ARGS="--https-socket :5000,/c.crt,/k.pem --processes 2 --ini /k.ini"\n'
    assert bind_uwsgi_default(https, "fd00::2", 5000, "/unused") == (
        "DAEMON_ARGS='--https-socket [fd00::2]:5000,/c.crt,/k.pem --processes 2 --ini /k.ini'\n")
    bound = 'DAEMON_ARGS="--http-socket 198.18.0.11:5000 --ini /k.ini"\n'
    assert bind_uwsgi_default(bound, "198.18.0.11", 5000, "/k.ini") == bound


def test_apache_vhosts_naming_an_address_follow_and_wildcards_stay() -> None:
    text = ("Listen 10.0.0.1:5000 http\nListen 8080\n<VirtualHost 10.0.0.1:5000>\n"
            "<VirtualHost *:5000>\n<VirtualHost 10.0.0.1:80>\n")
    assert bind_apache_listen(text, "10.0.0.2", 5000) == (
        "Listen 10.0.0.2:5000 http\nListen 8080\n<VirtualHost 10.0.0.2:5000>\n"
        "<VirtualHost *:5000>\n<VirtualHost 10.0.0.1:80>\n")


def test_a_created_default_file_is_removed_by_rollback(debian: Inventory) -> None:
    op = _edit_for(debian, "keystone", "/etc/default/keystone")
    ctx = ctx_for(debian, NODE, profile_for("debian", "sysv"))
    absent = FileState(False, "", "", "", "", None)
    created = op.desired(ctx, absent)
    assert created is not None and created[1:] == ("root", "root", "0644")
    record = op.intent(ctx, absent)
    (undo,) = UNDO[record["kind"]](ctx, record)
    assert undo.script == "rm -f /etc/default/keystone"


def test_colocated_lb_binds_the_original_before_haproxy(debian: Inventory) -> None:
    runbook = build_lb_runbook(debian, first_deploy=True, families=families(debian))
    ids = [s.id for s in runbook.steps]
    services = [s for s in debian.services if not load_catalog()[s].lb_only]
    binds = [f"lb.bind.{s}" for s in services]
    assert ids[:len(binds) + 3] == ["lb.preflight", *binds, "lb.api-restart", "lb.ports-free"]
    assert ids.index("lb.ports-free") < ids.index("lb.haproxy-cfg")
    steps = {s.id: s for s in runbook.steps}
    original = CONTROLLERS["modern"][0]
    assert all(steps[b].hosts == (original,) for b in binds)
    keystone = [op for op in steps["lb.bind.keystone"].ops[original] if isinstance(op, FileEdit)]
    assert "/etc/default/keystone" in [op.path for op in keystone]
    restarts = {op.service: op.restart_after for op in steps["lb.api-restart"].ops[original]
                if isinstance(op, ServiceRunning)}
    assert restarts["keystone"] == frozenset({"lb.bind.keystone"})
    assert restarts["nova-api-metadata"] == frozenset({"lb.bind.nova"})
    # a bind of the APIs restarts no worker (they listen on no balanced port)
    workers = {w for s in services for v in load_catalog()[s].variants for w in v.workers}
    assert {"nova-conductor", "neutron-rpc-server", "heat-engine"} <= workers
    assert not workers & set(restarts)
    assert steps["lb.ports-free"].read_only
    # the preflight lets the original's keystone hold 0.0.0.0:5000 (lb.bind.keystone moves
    # it), but nobody else, and lb.ports-free after the restart lets nobody
    uwsgi = (Listening("0.0.0.0:5000", "0.0.0.0", 5000, 'users:(("uwsgi",pid=7))'),)
    profile = profile_for("debian", "sysv")
    for step, host, allowed in (("lb.preflight", original, True),
                                ("lb.preflight", CONTROLLERS["modern"][1], False),
                                ("lb.ports-free", original, False)):
        (check,) = [op for op in steps[step].ops[host]
                    if isinstance(op, Requirement) and op.op_id == "ports-free"]
        verdict = check.judge(ctx_for(debian, host, profile), uwsgi)
        assert (verdict is None) == allowed, (step, host, verdict)


def test_dedicated_lb_binds_nothing(inventories: Inventories) -> None:
    inv = inventories("modern", "debian", "dedicated")
    ids = [s.id for s in build_lb_runbook(inv, families=families(inv)).steps]
    assert not [i for i in ids if i.startswith("lb.bind") or i == "lb.api-restart"]


def test_offline_plan_of_a_colocated_debian_inventory_binds_instead_of_refusing(
        tmp_path: Path) -> None:
    """`deploy-controllers --offline` balancing keystone, neutron and nova on modern Debian."""
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(inventory_text("modern", "debian", "colocated"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HADEPLOY_")}
    environ.update(PYTHONPATH=str(ROOT), COLUMNS="200")
    services = [arg for s in ("keystone", "neutron", "nova") for arg in ("--service", s)]
    result = subprocess.run([sys.executable, "-m", "invoke", "deploy-controllers", "--hosts",
                             str(hosts), "--offline", *services], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("ctl.keystone.bind", "ctl.neutron.bind", "ctl.nova.bind"):
        assert f"\n{step}  " in result.stdout, step
    for path in ("/etc/default/keystone", "/etc/default/neutron-server",
                 "/etc/default/nova-api-metadata"):
        assert path in result.stdout, path


def test_el_httpd_vhosts_of_keystone_bind_to_each_node(inventories: Inventories) -> None:
    """RDO's wsgi-keystone.conf (Listen 5000, <VirtualHost *:5000>) and packstack's pair
    (ports.conf `Listen ADDR:5000`, 10-keystone_wsgi.conf `<VirtualHost ADDR:5000>`)."""
    inv = inventories("modern", "el7", "colocated")
    ops = {op.path: op for op in bind_edits(inv, load_catalog()["keystone"], "el",
                                             inv.node(NODE))}
    rdo = "Listen 5000\n\n<VirtualHost *:5000>\n    WSGIDaemonProcess keystone-public\n"
    ports = "Listen 192.168.1.221:80\nListen 192.168.1.221:5000\n"
    vhost = "<VirtualHost 192.168.1.221:5000>\n  ServerName rhos6-node1\n</VirtualHost>\n"
    ctx = ctx_for(inv, NODE, profile_for("el7"))
    for path, before, after in (
            ("/etc/httpd/conf.d/wsgi-keystone.conf", rdo,
             rdo.replace("Listen 5000", f"Listen {ADDRESS}:5000")),
            ("/etc/httpd/conf/ports.conf", ports, ports.replace(
                "192.168.1.221:5000", f"{ADDRESS}:5000")),
            ("/etc/httpd/conf.d/10-keystone_wsgi.conf", vhost,
             vhost.replace("192.168.1.221:5000", f"{ADDRESS}:5000"))):
        op = ops[path]
        state = FileState(True, "root", "root", "0644",
                          hashlib.sha256(before.encode()).hexdigest(), before.encode())
        want = op.desired(ctx, state)
        assert want is not None and want[0].decode() == after, path
        assert op.desired(ctx, FileState(False, "", "", "", "", None)) is None


def test_the_lb_phase_restarts_only_running_apis_and_never_enables_one(
        debian: Inventory) -> None:
    """deploy-lb moves the original's running APIs; starting or enabling one is not its job
    (a co-located original may not run every balanced service)."""
    runbook = build_lb_runbook(debian, first_deploy=True, families=families(debian))
    original = CONTROLLERS["modern"][0]
    (keystone,) = [op for op in {s.id: s for s in runbook.steps}["lb.api-restart"].ops[original]
                   if isinstance(op, ServiceRunning) and op.service == "keystone"]
    profile = profile_for("debian", "sysv")
    changed = ctx_for(debian, original, profile, "lb.api-restart",
                      frozenset({"lb.bind.keystone"}))
    unchanged = ctx_for(debian, original, profile, "lb.api-restart")
    stopped, running = ServiceState(False, False), ServiceState(False, True)
    assert keystone.done(changed, stopped) and keystone.done(unchanged, running)
    assert not keystone.done(changed, running)
    (restart,) = keystone.apply(changed, running)
    assert "service keystone restart" in restart.script and "update-rc.d" not in restart.script
    record = keystone.intent(changed, running)
    assert [c.deferred for c in UNDO[record["kind"]](changed, record)] == [True]
