"""Keystone's side of provisioning: the bootstrap (admin, region, identity endpoints), the
services' users and endpoints as packstack registers them, and the admin credentials file."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from lab.errors import LabError
from lab.hosts import LabHost
from lab.openstack.hostops import run, run_python
from lab.openstack.recipe import SERVICE_PROJECT, Recipe, Site

ADMIN_RC = "/root/keystonerc_admin"

# $1 keystone's base URL, $2 region; stdin: the admin password.
_BOOTSTRAP_SCRIPT = r"""
set -eu
url=$1 region=$2
IFS= read -r OS_BOOTSTRAP_PASSWORD
export OS_BOOTSTRAP_PASSWORD
runuser -u keystone -- keystone-manage bootstrap --bootstrap-username admin \
    --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-service-name keystone --bootstrap-region-id "$region" \
    --bootstrap-admin-url "$url" --bootstrap-internal-url "$url" --bootstrap-public-url "$url"
"""

# Runs on the host with the packages' python3; reads its parameters as one JSON line on stdin
# (the passwords never reach a command line). Creates packstack's service project, the
# services' users (role admin there), extra roles, domains with their admin user, and each
# service with its three endpoints. Idempotent, so a retry after a dropped connection (uwsgi
# workers still starting) is safe.
_REGISTER = r"""
import json, sys
import requests
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client

p = json.loads(sys.stdin.readline())
auth = v3.Password(auth_url=p["auth_url"], username="admin", password=p["admin_password"],
                   project_name="admin", user_domain_name="Default",
                   project_domain_name="Default")
# One connection per request. Keystone's uwsgi (http-socket) closes each connection after its
# answer without saying so; after a 204 (no body, so nothing to read up to the close) the
# client reuses the connection, and when the close had not arrived yet the next request is
# reset ("Connection aborted"). A request header `Connection: close` does not stop that
# reuse; dropping the pool's connections after each response does.
http = requests.Session()
http.hooks["response"].append(lambda response, *args, **kwargs: response.connection.close())
ks = client.Client(session=session.Session(auth=auth, session=http),
                   interface="public", region_name=p["region"])
project = (ks.projects.list(name=p["project"]) or
           [ks.projects.create(p["project"], domain="default",
                               description="Tenant for the openstack services")])[0]
roles = {r.name: r for r in ks.roles.list()}
for name in p["roles"]:
    if name not in roles:
        roles[name] = ks.roles.create(name)
for name, password in p["users"].items():
    user = (ks.users.list(name=name, domain="default") or
            [ks.users.create(name, domain="default", password=password,
                             default_project=project)])[0]
    ks.roles.grant(roles["admin"], user=user, project=project)
for name, admin_name, password in p["domains"]:
    domain = (ks.domains.list(name=name) or
              [ks.domains.create(name, description="Stack projects and users")])[0]
    admin = (ks.users.list(name=admin_name, domain=domain) or
             [ks.users.create(admin_name, domain=domain, password=password)])[0]
    ks.roles.grant(roles["admin"], user=admin, domain=domain)
for s in p["services"]:
    service = (ks.services.list(name=s["name"], type=s["type"]) or
               [ks.services.create(s["name"], type=s["type"],
                                   description=s["description"])])[0]
    have = {e.interface for e in ks.endpoints.list(service=service)}
    for interface in ("public", "internal", "admin"):
        if interface not in have:
            ks.endpoints.create(service, s["url"], interface=interface, region=p["region"])
"""


def bootstrap(host: LabHost, site: Site, admin_password: str) -> None:
    """keystone-manage bootstrap: admin user/project/role, the region, identity endpoints."""
    run(host, _BOOTSTRAP_SCRIPT, [site.identity_url, site.region], "bootstrap Keystone",
        input=admin_password + "\n", timeout=300)


def register(host: LabHost, site: Site, admin_password: str,
             recipes: Sequence[Recipe]) -> None:
    """Register every recipe's user, roles, domain and endpoints in Keystone."""
    params = {
        "auth_url": f"{site.identity_url}/v3", "admin_password": admin_password,
        "project": SERVICE_PROJECT, "region": site.region,
        "roles": sorted({"admin", *(role for r in recipes for role in r.roles)}),
        "users": {r.user: site.password("user:" + r.user) for r in recipes if r.user},
        "domains": [[r.domain[0], r.domain[1], site.password("user:" + r.domain[1])]
                    for r in recipes if r.domain],
        "services": [{"name": e.service, "type": e.type, "description": e.description,
                      "url": e.url.format(address=site.address)}
                     for r in recipes for e in r.endpoints],
    }
    # Up to ten tries, 10 s apart: a Keystone just started may still drop a connection.
    for attempt in range(10):
        try:
            run_python(host, _REGISTER, json.dumps(params) + "\n",
                       "register the services in Keystone")
            return
        except LabError as exc:
            if attempt == 9:
                # What Keystone itself said and whether its uwsgi still runs: the client
                # only sees its connections reset.
                seen = host.exec(["sh", "-c", "tail -n 40 /var/log/keystone/keystone.log; "
                                  "ps -eo pid,stat,rss,etime,args | grep -E '[u]wsgi'"],
                                 check=False).stdout
                raise LabError(f"{exc}\nKeystone's log and uwsgi processes:\n{seen}") from exc
            time.sleep(10)


def admin_rc_text(admin_password: str, region: str, keystone_url: str) -> str:
    """packstack's keystonerc_admin, for Keystone v3, pointing at the original."""
    return (
        "unset OS_SERVICE_TOKEN\n"
        "    export OS_USERNAME=admin\n"
        f"    export OS_PASSWORD='{admin_password}'\n"
        f"    export OS_REGION_NAME={region}\n"
        f"    export OS_AUTH_URL={keystone_url}\n"
        "    export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '\n"
        "\n"
        "export OS_PROJECT_NAME=admin\n"
        "export OS_USER_DOMAIN_NAME=Default\n"
        "export OS_PROJECT_DOMAIN_NAME=Default\n"
        "export OS_IDENTITY_API_VERSION=3\n"
    )
