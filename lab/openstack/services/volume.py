"""Cinder's API under uwsgi (port 8776, every address) and its scheduler; no volume backend
(`volume service list` and `volume list` need none)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, IniEdit, Recipe, Site, uwsgi_processes

CINDER_PORT = 8776


def _configure(site: Site) -> Sequence[Edit]:
    return (
        IniEdit("/etc/cinder/cinder.conf", [
            ("DEFAULT", "transport_url", site.transport_url),
            ("DEFAULT", "auth_strategy", "keystone"),
            ("DEFAULT", "my_ip", site.address),
            ("DEFAULT", "osapi_volume_listen", site.address),
            ("DEFAULT", "osapi_volume_workers", "1"),
            ("DEFAULT", "glance_api_servers", f"http://{site.address}:9292"),
            ("database", "connection", site.db_connection("cinder", "cinder")),
            ("oslo_concurrency", "lock_path", "/var/lib/cinder/tmp"),
            *site.authtoken("cinder"),
        ]),
        uwsgi_processes("/etc/cinder/cinder-api-uwsgi.ini", 1),
    )


CINDER = Recipe(
    name="cinder",
    packages=("cinder-api", "cinder-scheduler"),
    preseed="""\
cinder-common cinder/configure_db boolean false
cinder-common cinder/configure_rabbit boolean false
cinder-common cinder/configure_ksat boolean false
cinder-api cinder/configure_api-endpoint boolean false
""",
    db_role="cinder",
    databases=("cinder",),
    user="cinder",
    endpoints=(Endpoint("cinderv3", "volumev3", "Cinder Service v3",
                        "http://{address}:8776/v3/%(project_id)s"),),
    configure=_configure,
    sync="runuser -u cinder -- cinder-manage db sync",
    daemons=(
        Daemon("cinder-scheduler", process="/usr/bin/cinder-scheduler"),
        Daemon("cinder-api", CINDER_PORT, "/"),
    ),
)
