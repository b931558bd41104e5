"""Neutron's server with the ML2 plugin and no agents: Debian's neutron-server metapackage is
neutron-api (uwsgi, port 9696, every address) plus neutron-rpc-server. Tenant networks are
VLANs of physnet1, so `network create` allocates one without any agent."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, IniEdit, Recipe, Site, uwsgi_processes

NEUTRON_PORT = 9696
ML2_CONF = "/etc/neutron/plugins/ml2/ml2_conf.ini"


def _configure(site: Site) -> Sequence[Edit]:
    return (
        IniEdit("/etc/neutron/neutron.conf", [
            ("DEFAULT", "core_plugin", "ml2"),
            ("DEFAULT", "service_plugins", ""),
            ("DEFAULT", "auth_strategy", "keystone"),
            ("DEFAULT", "bind_host", site.address),
            ("DEFAULT", "transport_url", site.transport_url),
            ("DEFAULT", "api_workers", "1"),
            ("DEFAULT", "rpc_workers", "1"),
            ("DEFAULT", "rpc_state_report_workers", "1"),
            ("DEFAULT", "notify_nova_on_port_status_changes", "true"),
            ("DEFAULT", "notify_nova_on_port_data_changes", "true"),
            ("database", "connection", site.db_connection("neutron", "neutron")),
            ("oslo_concurrency", "lock_path", "/var/lib/neutron/lock"),
            *site.authtoken("neutron"),
            *site.service_auth("nova", "nova"),
        ]),
        IniEdit(ML2_CONF, [
            ("ml2", "type_drivers", "flat,vlan"),
            ("ml2", "tenant_network_types", "vlan"),
            ("ml2", "mechanism_drivers", ""),
            ("ml2", "extension_drivers", "port_security"),
            ("ml2_type_flat", "flat_networks", "*"),
            ("ml2_type_vlan", "network_vlan_ranges", "physnet1:100:199"),
        ]),
        uwsgi_processes("/etc/neutron/neutron-api-uwsgi.ini", 1),
    )


NEUTRON = Recipe(
    name="neutron",
    packages=("neutron-server",),
    preseed="""\
neutron-common neutron/configure_db boolean false
neutron-common neutron/configure_rabbit boolean false
neutron-common neutron/configure_ksat boolean false
neutron-common neutron/configure_nova boolean false
neutron-api neutron/configure_api-endpoint boolean false
""",
    db_role="neutron",
    databases=("neutron",),
    user="neutron",
    endpoints=(Endpoint("neutron", "network", "Neutron Networking Service",
                        "http://{address}:9696"),),
    configure=_configure,
    sync=f"""\
runuser -u neutron -- neutron-db-manage --config-file /etc/neutron/neutron.conf \\
    --config-file {ML2_CONF} upgrade head
""",
    daemons=(
        Daemon("neutron-rpc-server", process="/usr/bin/neutron-rpc-server"),
        Daemon("neutron-api", NEUTRON_PORT, "/"),
    ),
)
