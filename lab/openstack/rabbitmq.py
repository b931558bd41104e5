"""A three-node RabbitMQ cluster (Debian 12's rabbitmq-server) on lab hosts, the AMQP
listener of each bound to its own address with the catalog's edit (`NODE_IP_ADDRESS`).

Like Galera, the operator's part of guide 2: the nodes share one random Erlang cookie, start
side by side, and the others join the first (`rabbitmqctl join_cluster rabbit@FIRST`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lab.cluster import Lab
from lab.errors import LabError
from lab.hosts import LabHost
from lab.openstack.hostops import run, wait_started, write
from lab.openstack.operator_binds import bind_to_node

AMQP_PORT = 5672
_COOKIE = "/var/lib/rabbitmq/.erlang.cookie"
_JOIN = """\
rabbitmqctl -q stop_app
rabbitmqctl -q join_cluster "rabbit@$1"
rabbitmqctl -q start_app
"""


def running_nodes(host: LabHost) -> list[str]:
    """The cluster's running nodes as the host's node sees them."""
    out = host.exec(["rabbitmqctl", "-q", "cluster_status", "--formatter", "json"],
                    check=False, timeout=120).stdout
    try:
        return sorted(json.loads(out)["running_nodes"])
    except (ValueError, KeyError, TypeError):
        return []


def _start(host: LabHost, cookie: str) -> None:
    write(host, _COOKIE, cookie, "rabbitmq", "rabbitmq", "0400")
    bind_to_node(host, "rabbitmq")
    run(host, "service rabbitmq-server start >/dev/null", [], "start RabbitMQ", timeout=300)
    wait_started(host, "rabbitmq-server", AMQP_PORT, None, seconds=120,
                 log_glob="/var/log/rabbitmq/*.log")


def form_rabbitmq_cluster(lab: Lab, names: Sequence[str]) -> None:
    """Start RabbitMQ on `names` (installed, stopped) and cluster them with the first."""
    hosts = [lab.hosts[n] for n in names]
    cookie = secrets.token_hex(20)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(lambda h: _start(h, cookie), hosts))
    # One node at a time, as RabbitMQ's clustering guide does it: two joining at once race
    # in mnesia (a CI run's ctl3 failed `start_app` with mnesia_app's badmatch while ctl2
    # joined beside it).
    for host in hosts[1:]:
        run(host, _JOIN, [hosts[0].name], "join the RabbitMQ cluster", timeout=300)
    expected = sorted(f"rabbit@{h.name}" for h in hosts)
    if running_nodes(hosts[0]) != expected:
        raise LabError(f"{hosts[0].name}: RabbitMQ runs {running_nodes(hosts[0])}, not "
                       f"{expected}")
