"""Guide 2's supporting services bound to each node's address: MariaDB (Galera) and RabbitMQ.

hadeploy restarts neither (a cluster member is restarted node by node by its operator); the
catalog says where each is bound, the co-located preflight names it when one holds its port
on every address, and the lab binds them with the same edits (lab.openstack.galera,
lab.openstack.rabbitmq). The file texts are Debian 12's (mariadb-server 10.11,
rabbitmq-server 3.10).
"""

from __future__ import annotations

from hadeploy.catalog import Bind, load_catalog
from hadeploy.facts import Probe
from hadeploy.inventory import Inventory
from hadeploy.ops import HostContext, Requirement
from hadeploy.platforms import profile_for
from hadeploy.render import render_haproxy_cfg
from hadeploy.render.binds import render_bind
from hadeploy.runbook import build_lb_runbook
from tests.unit.haproxy_sections import parse_haproxy

SERVER_CNF = """\
[server]

[mysqld]
user                    = mysql
pid-file                = /run/mysqld/mysqld.pid
basedir                 = /usr
datadir                 = /var/lib/mysql
tmpdir                  = /tmp
# localhost which is more compatible and is not less secure.
bind-address            = 127.0.0.1

[embedded]
"""
RABBITMQ_ENV = """\
# By default RabbitMQ will bind to all interfaces, on IPv4 and IPv6 if
# available. Set this if you only want to bind to one network interface or#
# address family.
#NODE_IP_ADDRESS=127.0.0.1

# Defaults to 5672.
#NODE_PORT=5672
"""


def _bind(service: str) -> Bind:
    variant = load_catalog()[service].variant("debian", "modern")
    (bind,) = variant.binds_for("modern")
    return bind


def test_mariadb_binds_through_bind_address_in_mysqld() -> None:
    bind = _bind("galera")
    assert (bind.file, bind.port) == ("/etc/mysql/mariadb.conf.d/50-server.cnf", 3306)
    bound = render_bind(bind, SERVER_CNF, "198.18.0.14")
    assert bound == SERVER_CNF.replace("bind-address            = 127.0.0.1",
                                       "bind-address            = 198.18.0.14")
    assert render_bind(bind, bound, "198.18.0.14") == bound


def test_rabbitmq_binds_through_node_ip_address() -> None:
    bind = _bind("rabbitmq")
    assert (bind.file, bind.port) == ("/etc/rabbitmq/rabbitmq-env.conf", 5672)
    bound = render_bind(bind, RABBITMQ_ENV, "198.18.0.14")
    assert bound == RABBITMQ_ENV + "export NODE_IP_ADDRESS=198.18.0.14\n"
    assert render_bind(bind, bound, "198.18.0.15") == (
        RABBITMQ_ENV + "export NODE_IP_ADDRESS=198.18.0.15\n")


def test_galera_reaches_one_node_the_others_are_backup(colocated: Inventory) -> None:
    sections = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(colocated))}
    first, *others = sections["backend", "galera-vms"].servers
    assert not first.endswith(" backup") and others
    assert all(server.endswith(" backup") for server in others)
    assert not any(s.endswith(" backup") for s in sections["backend", "rabbitmq-vms"].servers)


def test_preflight_says_where_the_operator_binds_mariadb_and_rabbitmq(
        colocated: Inventory) -> None:
    node = colocated.controllers[1]
    step = next(s for s in build_lb_runbook(colocated).steps if s.id == "lb.preflight")
    (op,) = [o for o in step.ops[node.name] if o.op_id == "ports-free"]
    assert isinstance(op, Requirement)
    ctx = HostContext(node, profile_for("debian", "sysv"), "run", step.id)
    ss = ('LISTEN 0 80 0.0.0.0:3306 0.0.0.0:* users:(("mariadbd",pid=7,fd=3))\n'
          'LISTEN 0 128 *:5672 *:* users:(("beam.smp",pid=9,fd=3))\n'
          'LISTEN 0 80 0.0.0.0:4567 0.0.0.0:* users:(("mariadbd",pid=7,fd=8))\n')
    seen = op.read(ctx, Probe(ss))
    assert not op.done(ctx, seen)
    message = op.preview(ctx, seen)
    assert "bind-address in [mysqld] in /etc/mysql/mariadb.conf.d/50-server.cnf, then " \
           "restart mariadb node by node" in message
    assert "NODE_IP_ADDRESS in /etc/rabbitmq/rabbitmq-env.conf, then restart " \
           "rabbitmq-server node by node" in message
    assert "4567" not in message  # Galera's replication port is not balanced
    bound = ss.replace("0.0.0.0:3306", f"{node.api_bind}:3306").replace(
        "*:5672", f"{node.api_bind}:5672")
    assert op.done(ctx, op.read(ctx, Probe(bound)))
