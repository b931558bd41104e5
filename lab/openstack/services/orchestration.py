"""Heat: heat-api and heat-api-cfn under uwsgi (ports 8004 and 8000, every address; the
`[heat_api] bind_host` keys packstack writes are ignored there) and one heat-engine, with
the stack domain `heat` and its admin user as packstack sets them up."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, IniEdit, Recipe, Site, uwsgi_processes

HEAT_API_PORT = 8004
HEAT_CFN_PORT = 8000


def _configure(site: Site) -> Sequence[Edit]:
    a = site.address
    return (
        IniEdit("/etc/heat/heat.conf", [
            ("DEFAULT", "transport_url", site.transport_url),
            ("DEFAULT", "heat_metadata_server_url", f"http://{a}:{HEAT_CFN_PORT}"),
            ("DEFAULT", "heat_waitcondition_server_url",
             f"http://{a}:{HEAT_CFN_PORT}/v1/waitcondition"),
            ("DEFAULT", "stack_user_domain_name", "heat"),
            ("DEFAULT", "stack_domain_admin", "heat_domain_admin"),
            ("DEFAULT", "stack_domain_admin_password", site.password("user:heat_domain_admin")),
            ("DEFAULT", "num_engine_workers", "1"),
            ("DEFAULT", "region_name_for_services", site.region),
            ("heat_api", "bind_host", a),
            ("heat_api", "workers", "1"),
            ("heat_api_cfn", "bind_host", a),
            ("heat_api_cfn", "workers", "1"),
            ("database", "connection", site.db_connection("heat", "heat")),
            ("clients_keystone", "auth_uri", site.identity_url),
            ("ec2authtoken", "auth_uri", f"{site.identity_url}/v3"),
            *site.authtoken("heat"),
            *site.service_auth("trustee", "heat"),
        ]),
        uwsgi_processes("/etc/heat/heat-api-uwsgi.ini", 1),
        uwsgi_processes("/etc/heat/heat-api-cfn-uwsgi.ini", 1),
    )


HEAT = Recipe(
    name="heat",
    packages=("heat-api", "heat-api-cfn", "heat-engine", "python3-heatclient"),
    preseed="""\
heat-common heat/configure_with_debconf boolean false
heat-common heat/configure_db boolean false
heat-common heat/configure_rabbit boolean false
heat-common heat/configure_ksat boolean false
heat-api heat/configure_api-endpoint boolean false
heat-api-cfn heat-api-cfn/configure_api-endpoint boolean false
""",
    db_role="heat",
    databases=("heat",),
    user="heat",
    roles=("heat_stack_owner", "heat_stack_user"),
    domain=("heat", "heat_domain_admin"),
    endpoints=(
        Endpoint("heat", "orchestration", "Openstack Orchestration Service",
                 "http://{address}:8004/v1/%(tenant_id)s"),
        Endpoint("heat-cfn", "cloudformation", "Openstack Cloudformation Service",
                 "http://{address}:8000/v1"),
    ),
    configure=_configure,
    sync="runuser -u heat -- heat-manage db_sync",
    daemons=(
        Daemon("heat-engine", process="/usr/bin/heat-engine"),
        Daemon("heat-api", HEAT_API_PORT, "/"),
        Daemon("heat-api-cfn", HEAT_CFN_PORT, "/"),
    ),
)
