"""A three-node MariaDB Galera cluster (Debian 12's mariadb-server and galera-4) on lab hosts,
each node bound to its own address, with the HTTP health responder on port 9200 that guide 2's
haproxy asks (`option httpchk`, `check port 9200`).

The cluster and its responder are the operator's part of guide 2, set up before haproxy: the
guide assumes both exist, and hadeploy restarts no database (a Galera member is restarted one
node at a time by whoever runs the database). The responder is `galera_health.py`, answering
like Percona's clustercheck: 200 while the node is Synced, 503 otherwise, so that
`SET GLOBAL wsrep_desync=ON` (a node taken out for a backup) takes it out of haproxy's pool.
"""

from __future__ import annotations

import functools
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lab.cluster import Lab
from lab.errors import LabError
from lab.hosts import LabHost
from lab.openstack.hostops import run, wait, write
from lab.openstack.operator_binds import bind_to_node

GALERA_PORT = 3306
HEALTH_PORT = 9200
#: On every node, mode 0600: the `lab` SQL user's client options (`mysql --defaults-extra-file`).
SQL_CLIENT_CNF = "/root/.hadeploy-lab-sql.cnf"
SQL_USER = "lab"
_WSREP_CNF = "/etc/mysql/mariadb.conf.d/61-hadeploy-lab-galera.cnf"
_RESPONDER = "/usr/local/lib/hadeploy-lab/galera_health.py"
_RESPONDER_PID = "/run/hadeploy-lab-galera-health.pid"
_START_RESPONDER = (
    'start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$1" '
    '--exec /usr/bin/python3 -- "$2" "$3" "$4"'
)


def _wsrep_cnf(host: LabHost, members: Sequence[str]) -> str:
    # gmcast.listen_addr: replication on the node's address too, not on every address
    return f"""\
# hadeploy lab: this node's part of a three-node Galera cluster
[galera]
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = hadeploy-lab
wsrep_cluster_address = gcomm://{','.join(members)}
wsrep_node_address = {host.address}
wsrep_node_name = {host.name}
wsrep_provider_options = "gcache.size=16M; gmcast.listen_addr=tcp://{host.address}:4567"
wsrep_sst_method = rsync
binlog_format = row
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size = 32M
"""


def sql(host: LabHost, statements: str, what: str) -> str:
    """Run SQL as MariaDB's root on the host (Unix socket), statements on stdin."""
    return run(host, 'mysql -N -B', [], what, input=statements)


def cluster_size(host: LabHost) -> int:
    """wsrep_cluster_size as the host's node sees it (0 when MariaDB does not answer)."""
    out = host.exec(["mysql", "-N", "-B", "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'"],
                    check=False).stdout.split()
    return int(out[1]) if len(out) == 2 else 0


def set_desync(host: LabHost, on: bool) -> None:
    """Desynchronise the node (as for a backup): its responder then answers 503."""
    sql(host, f"SET GLOBAL wsrep_desync={'ON' if on else 'OFF'};\n",
        f"set wsrep_desync {'on' if on else 'off'}")


def health_status(host: LabHost) -> int | None:
    """The HTTP status of the host's responder on its address, None if nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host.address}:{HEALTH_PORT}/",
                                    timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as answer:
        return answer.code
    except OSError:
        return None


def _synced(host: LabHost) -> bool:
    return health_status(host) == 200


def form_galera_cluster(lab: Lab, names: Sequence[str], sql_password: str) -> None:
    """Configure and start Galera on `names` (MariaDB installed, stopped): the first node
    bootstraps the cluster, the others join it one after another (rsync state transfer);
    then the `lab` user (no privileges beyond logging in) and each node's responder."""
    hosts = [lab.hosts[n] for n in names]
    members = [h.address for h in hosts]
    for host in hosts:
        write(host, _WSREP_CNF, _wsrep_cnf(host, members), "root", "root", "0644")
        bind_to_node(host, "galera")
    for index, host in enumerate(hosts):
        action = "bootstrap" if index == 0 else "start"
        run(host, 'service mariadb "$1" >/dev/null', [action], f"{action} MariaDB (Galera)",
            timeout=300)
        if cluster_size(host) != index + 1:
            raise LabError(f"{host.name}: Galera has {cluster_size(host)} nodes, not "
                           f"{index + 1}, after its start")
    # One statement replicates to every node; the password comes on stdin.
    sql(hosts[0], f"CREATE USER IF NOT EXISTS '{SQL_USER}'@'%' IDENTIFIED BY "
        f"'{sql_password}';\n", "create the lab's SQL user")
    source = (Path(__file__).parent / "galera_health.py").read_text()
    for host in hosts:
        write(host, SQL_CLIENT_CNF, f"[client]\nuser = {SQL_USER}\npassword = {sql_password}\n",
              "root", "root", "0600")
        run(host, 'mkdir -p "$(dirname "$1")"', [_RESPONDER], "make the responder's directory")
        write(host, _RESPONDER, source, "root", "root", "0755")
        run(host, _START_RESPONDER, [_RESPONDER_PID, _RESPONDER, host.address,
                                      str(HEALTH_PORT)], "start the Galera health responder")
    for host in hosts:
        if not wait(functools.partial(_synced, host), 30):
            raise LabError(f"{host.name}: the Galera responder on {host.address}:"
                           f"{HEALTH_PORT} does not answer 200 (status {health_status(host)})")
