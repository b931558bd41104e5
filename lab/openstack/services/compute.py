"""Nova's control plane: nova-api and nova-api-metadata under uwsgi (ports 8774 and 8775,
every address: the init scripts pass `--http-socket :PORT`), nova-conductor, nova-scheduler
and nova-novncproxy (6080, `[vnc] novncproxy_host`). nova.conf names the original's address
in my_ip and the listen keys packstack writes (ignored under uwsgi, rewritten by hadeploy)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import (
    Daemon,
    Edit,
    Endpoint,
    IniEdit,
    LineEdit,
    Recipe,
    Site,
    uwsgi_processes,
    uwsgi_threads,
)

NOVA_API_PORT = 8774
METADATA_PORT = 8775
NOVNC_PORT = 6080


def _configure(site: Site) -> Sequence[Edit]:
    a = site.address
    return (
        IniEdit("/etc/nova/nova.conf", [
            ("DEFAULT", "transport_url", site.transport_url),
            ("DEFAULT", "my_ip", a),
            ("DEFAULT", "osapi_compute_listen", a),
            ("DEFAULT", "metadata_listen", a),
            ("DEFAULT", "osapi_compute_workers", "1"),
            ("DEFAULT", "metadata_workers", "1"),
            ("api", "auth_strategy", "keystone"),
            ("api_database", "connection", site.db_connection("nova", "nova_api")),
            ("database", "connection", site.db_connection("nova", "nova")),
            ("conductor", "workers", "1"),
            ("scheduler", "workers", "1"),
            ("oslo_concurrency", "lock_path", "/var/lib/nova/tmp"),
            *site.authtoken("nova"),
            *site.service_auth("placement", "placement"),
            *site.service_auth("neutron", "neutron"),
            ("neutron", "service_metadata_proxy", "true"),
            ("neutron", "metadata_proxy_shared_secret", site.password("metadata")),
            ("vnc", "enabled", "true"),
            ("vnc", "server_listen", a),
            ("vnc", "server_proxyclient_address", a),
            ("vnc", "novncproxy_host", a),
            ("vnc", "novncproxy_base_url", f"http://{a}:{NOVNC_PORT}/vnc_auto.html"),
        ]),
        # Not a debconf answer: nova-consoleproxy's config script sets daemon_type from this
        # file (spicehtml5 unless it says novnc), whatever was preseeded.
        LineEdit("/etc/default/nova-consoleproxy", r"NOVA_CONSOLE_PROXY_TYPE=.*",
                 "NOVA_CONSOLE_PROXY_TYPE=novnc"),
        uwsgi_processes("/etc/nova/nova-api-uwsgi.ini", 1),
        uwsgi_processes("/etc/nova/nova-api-metadata-uwsgi.ini", 1),
        # Nova's WSGI apps run under eventlet's monkey patching (nova.api.openstack imports
        # nova.monkey_patch). Debian's nova-api-uwsgi.ini has one thread per process for it,
        # its nova-api-metadata-uwsgi.ini 32: with those, the metadata API stopped accepting
        # connections under haproxy's health checks (a connect to :8775 timed out for 60 s,
        # on the original in one CI run, on a new controller in the next lab run). The lab's
        # operator runs it as Debian runs nova-api.
        uwsgi_threads("/etc/nova/nova-api-metadata-uwsgi.ini", 1),
    )


NOVA = Recipe(
    name="nova",
    packages=("nova-api", "nova-conductor", "nova-scheduler", "nova-consoleproxy"),
    preseed="""\
nova-common nova/configure_db boolean false
nova-common nova/configure_rabbit boolean false
nova-common nova/configure_ksat boolean false
nova-common nova/configure_neutron boolean false
nova-common nova/configure_placement boolean false
nova-api novaapi/configure_db boolean false
nova-api nova/configure_api-endpoint boolean false
""",
    db_role="nova",
    databases=("nova_api", "nova", "nova_cell0"),
    user="nova",
    endpoints=(Endpoint("nova", "compute", "OpenStack Compute Service",
                        "http://{address}:8774/v2.1"),),
    configure=_configure,
    sync="""\
nm() { runuser -u nova -- nova-manage "$@"; }
nm api_db sync
nm cell_v2 map_cell0
nm cell_v2 create_cell --name cell1
nm db sync
""",
    daemons=(
        Daemon("nova-conductor", process="/usr/bin/nova-conductor"),
        Daemon("nova-scheduler", process="/usr/bin/nova-scheduler"),
        Daemon("nova-api", NOVA_API_PORT, "/"),
        Daemon("nova-api-metadata", METADATA_PORT, "/"),
        Daemon("nova-novncproxy", NOVNC_PORT, "/vnc_auto.html"),
    ),
)
