"""The original's database: the PostgreSQL of the hosts' lower layer, reachable from the lab
network with passwords, with one role per service owning that service's databases."""

from __future__ import annotations

from collections.abc import Sequence

from lab.hosts import LabHost
from lab.openstack.hostops import run
from lab.openstack.recipe import LAB_NETWORK, Recipe, Site

# $1 host address, $2 lab network; stdin: the SQL. PostgreSQL listens on the lab address
# too, and lets the lab network in with passwords.
_POSTGRES_SCRIPT = r"""
set -eu
addr=$1 net=$2
conf=$(ls -d /etc/postgresql/*/main 2>/dev/null | sort -V | tail -n 1)
[ -d "$conf" ] || {
    echo "no PostgreSQL cluster under /etc/postgresql: the lab's hosts get PostgreSQL from" \
        "the workstation's root file system (apt-get install postgresql there)" >&2
    exit 1
}
printf "# hadeploy lab: reachable by the other controllers\nlisten_addresses = 'localhost,%s'\n" \
    "$addr" >"$conf/conf.d/hadeploy-lab.conf"
grep -q "^host all all $net " "$conf/pg_hba.conf" \
    || printf 'host all all %s scram-sha-256\n' "$net" >>"$conf/pg_hba.conf"
service postgresql start >/dev/null
i=0
until pg_isready -q -h "$addr" -p 5432 -t 1; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || { echo "PostgreSQL did not come up on $addr:5432" >&2; exit 1; }
    sleep 0.5
done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres
"""


def create_databases(host: LabHost, site: Site, recipes: Sequence[Recipe]) -> None:
    """Start PostgreSQL on the host and create every recipe's role and databases."""
    sql = ""
    for recipe in recipes:
        if recipe.db_role is None:
            continue
        password = site.password("db:" + recipe.db_role)
        sql += f"CREATE ROLE {recipe.db_role} LOGIN PASSWORD '{password}';\n"
        sql += "".join(f"CREATE DATABASE {name} OWNER {recipe.db_role};\n"
                       for name in recipe.databases)
    run(host, _POSTGRES_SCRIPT, [site.address, LAB_NETWORK], "set up PostgreSQL", input=sql)
