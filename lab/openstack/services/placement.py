"""Placement's API under uwsgi (Debian's placement-api init script, port 8778, every address)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, IniEdit, Recipe, Site, uwsgi_processes

PLACEMENT_PORT = 8778


def _configure(site: Site) -> Sequence[Edit]:
    return (
        IniEdit("/etc/placement/placement.conf", [
            ("placement_database", "connection", site.db_connection("placement", "placement")),
            ("api", "auth_strategy", "keystone"),
            *site.authtoken("placement"),
        ]),
        uwsgi_processes("/etc/placement/placement-api-uwsgi.ini", 1),
    )


PLACEMENT = Recipe(
    name="placement",
    packages=("placement-api", "python3-osc-placement"),
    preseed="""\
placement-common placement/configure_db boolean false
placement-common placement/configure_ksat boolean false
placement-api placement/configure_api-endpoint boolean false
""",
    db_role="placement",
    databases=("placement",),
    user="placement",
    endpoints=(Endpoint("placement", "placement", "OpenStack Placement Service",
                        "http://{address}:8778"),),
    configure=_configure,
    sync="runuser -u placement -- placement-manage db sync",
    daemons=(Daemon("placement-api", PLACEMENT_PORT, "/"),),
)
