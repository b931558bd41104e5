"""Glance's API (Debian's eventlet glance-api) with the node-local file store, bound to the
original's address (`bind_host`, inside the copied glance-api.conf)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, IniEdit, Recipe, Site

GLANCE_PORT = 9292


def _configure(site: Site) -> Sequence[Edit]:
    return (IniEdit("/etc/glance/glance-api.conf", [
        ("DEFAULT", "bind_host", site.address),
        ("database", "connection", site.db_connection("glance", "glance")),
        ("keystone_authtoken", "www_authenticate_uri", site.identity_url),
        ("keystone_authtoken", "auth_url", site.identity_url),
        ("keystone_authtoken", "region_name", site.region),
        ("keystone_authtoken", "project_name", "services"),
        ("keystone_authtoken", "username", "glance"),
        ("keystone_authtoken", "password", site.password("user:glance")),
        ("paste_deploy", "flavor", "keystone"),
    ]),)


GLANCE = Recipe(
    name="glance",
    packages=("glance-api",),
    preseed="""\
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
""",
    db_role="glance",
    databases=("glance",),
    user="glance",
    endpoints=(Endpoint("glance", "image", "OpenStack Image Service",
                        "http://{address}:9292"),),
    configure=_configure,
    sync="""\
install -d -o glance -g glance -m 0750 /var/lib/glance/images
runuser -u glance -- glance-manage db_sync >/dev/null 2>&1
""",
    daemons=(Daemon("glance-api", GLANCE_PORT, "/"),),
)
