"""Swift: the proxy (uwsgi, port 8080) authenticating through Keystone, plus account,
container and object servers on the original with a one-replica ring of one device under
/srv/node (the host's own disk, `mount_check = false`), so a copied /etc/swift with its rings
is really used. Every server binds `bind_ip`, the original's address, read from its own
config file.

Debian trap: the swift-proxy, swift-account and swift-container init scripts leave CONFIG
unset and so start their server once per /etc/swift/*.conf (a pid file each under
/run/swift); only the run given its own file survives, the others exit at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, Endpoint, FileWrite, Recipe, Site

PROXY_PORT = 8080
#: Debian's (and Swift's) default ports of the storage servers.
STORAGE_PORTS = {"account": 6202, "container": 6201, "object": 6200}
DEVICE = "d1"


def _proxy_conf(site: Site) -> str:
    a = site.address
    return f"""\
[DEFAULT]
bind_ip = {a}
bind_port = {PROXY_PORT}
workers = 1
user = swift
log_name = swift-proxy

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk \
ratelimit authtoken keystoneauth copy container-quotas account-quotas slo dlo versioned_writes \
symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {site.identity_url}
auth_url = {site.identity_url}
memcached_servers = {a}:11211
auth_type = password
region_name = {site.region}
project_domain_name = Default
user_domain_name = Default
project_name = services
username = swift
password = {site.password("user:swift")}
delay_auth_decision = True

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, SwiftOperator, member

[filter:cache]
use = egg:swift#memcache
memcache_servers = {a}:11211

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:ratelimit]
use = egg:swift#ratelimit

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:account-quotas]
use = egg:swift#account_quotas

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes

[filter:symlink]
use = egg:swift#symlink
"""


def _server_conf(site: Site, kind: str) -> str:
    return f"""\
[DEFAULT]
bind_ip = {site.address}
bind_port = {STORAGE_PORTS[kind]}
workers = 1
user = swift
devices = /srv/node
mount_check = false
log_name = swift-{kind}

[pipeline:main]
pipeline = healthcheck {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[filter:healthcheck]
use = egg:swift#healthcheck

[{kind}-replicator]

[{kind}-auditor]
"""


def _configure(site: Site) -> Sequence[Edit]:
    swift_conf = f"""\
[swift-hash]
swift_hash_path_suffix = {site.password("swift-hash-suffix")}
swift_hash_path_prefix = {site.password("swift-hash-prefix")}

[storage-policy:0]
name = Policy-0
default = yes
"""
    return (
        FileWrite("/etc/swift/swift.conf", swift_conf, "root", "swift", "0640"),
        FileWrite("/etc/swift/proxy-server.conf", _proxy_conf(site), "root", "swift", "0640"),
        *(FileWrite(f"/etc/swift/{kind}-server.conf", _server_conf(site, kind),
                    "root", "swift", "0640") for kind in STORAGE_PORTS),
    )


# $1: the original's address. One ring per server kind: 2^10 partitions, 1 replica, one
# device on this host.
_RINGS = "\n".join(
    f"swift-ring-builder {kind}.builder create 10 1 1 >/dev/null\n"
    f'swift-ring-builder {kind}.builder add r1z1-"$1":{port}/{DEVICE} 100 >/dev/null\n'
    f"swift-ring-builder {kind}.builder rebalance >/dev/null"
    for kind, port in STORAGE_PORTS.items()
)

SWIFT = Recipe(
    name="swift",
    packages=("swift-proxy", "swift-account", "swift-container", "swift-object"),
    user="swift",
    endpoints=(Endpoint("swift", "object-store", "OpenStack Object Storage Service",
                        "http://{address}:8080/v1/AUTH_%(project_id)s"),),
    configure=_configure,
    sync=f"""\
install -d -o swift -g swift -m 0750 /srv/node/{DEVICE} /var/cache/swift
cd /etc/swift
{_RINGS}
chown -R root:swift /etc/swift
""",
    daemons=(
        *(Daemon(f"swift-{kind}", port, "/healthcheck", log="/var/log/swift/*")
          for kind, port in STORAGE_PORTS.items()),
        Daemon("swift-proxy", PROXY_PORT, "/healthcheck", log="/var/log/swift/*"),
    ),
)
