"""Guide 2's supporting services on the lab's controllers, as their operator leaves them
before haproxy comes: a MariaDB Galera cluster with its health responder on port 9200, a
RabbitMQ cluster and memcached, each bound to its node's own address (so haproxy can hold the
VIP's ports on the same node).

    provision_supporting(lab, ("ctl1", "ctl2", "ctl3"))

The hosts are reset first; their packages install once and are then laid in from the saved
installation (lab.openstack.install), like the OpenStack planes'.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lab.cluster import Lab
from lab.openstack import install
from lab.openstack.galera import form_galera_cluster
from lab.openstack.hostops import edit_lines, run, timed, wait_started
from lab.openstack.rabbitmq import form_rabbitmq_cluster

#: What every controller installs (rsync: Galera's state transfer to a joining node).
SUPPORT_PACKAGES: tuple[str, ...] = (
    "mariadb-server", "galera-4", "rsync", "rabbitmq-server", "memcached")
MEMCACHED_PORT = 11211
_CACHE = "supporting"


@dataclass(frozen=True)
class Supporting:
    """Where the supporting services run, and how long each phase took (seconds)."""

    hosts: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)


def _memcached(lab: Lab, name: str) -> None:
    host = lab.hosts[name]
    # Debian listens on 127.0.0.1 only; the services reach it on the node's address.
    edit_lines(host, "/etc/memcached.conf", r"-l .*", f"-l {host.address}")
    run(host, "service memcached start >/dev/null", [], "start memcached")
    wait_started(host, "memcached", MEMCACHED_PORT, None)


def provision_supporting(lab: Lab, names: Sequence[str],
                         progress: Callable[[str], None] | None = None) -> Supporting:
    """Reset `names`, install the supporting services' packages, then form the Galera and
    RabbitMQ clusters side by side and start memcached on each node."""
    say = progress or (lambda _: None)
    timings: dict[str, float] = {}
    started = time.monotonic()
    with timed(timings, "install"):
        for name in names:  # the first installs (or lays in) and saves, the others lay in
            say(f"{name}: installing {', '.join(SUPPORT_PACKAGES)}")
            install.install(lab, name, _CACHE, SUPPORT_PACKAGES, "")
    say("forming the Galera and RabbitMQ clusters")
    with ThreadPoolExecutor(max_workers=2) as pool:
        galera = pool.submit(_timed_call, timings, "galera", form_galera_cluster, lab, names,
                             secrets.token_hex(16))
        rabbit = pool.submit(_timed_call, timings, "rabbitmq", form_rabbitmq_cluster, lab, names)
        galera.result()
        rabbit.result()
    with timed(timings, "memcached"):
        for name in names:
            _memcached(lab, name)
    timings["total"] = round(time.monotonic() - started, 1)
    return Supporting(tuple(names), timings)


def _timed_call(timings: dict[str, float], name: str, call: Callable[..., None],
                *args: object) -> None:
    with timed(timings, name):
        call(*args)
