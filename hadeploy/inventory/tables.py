"""The schema of every inventory table (see README's inventory reference for prose)."""

from __future__ import annotations

import re

from hadeploy.inventory.schema import (
    ENV,
    GATEWAY,
    HOST_NAME,
    LOCAL,
    NAME,
    PATH,
    PORT,
    REQUIRED,
    TIME,
    URI_PATH,
    Key,
    float_range,
    in_range,
    ipv4,
    matches,
    one_of,
    str_list,
)

TOP_LEVEL = ("deployment", "ssh", "vip", "keepalived", "haproxy", "lb", "controller",
             "services", "openstack", "tls")

DEPLOYMENT = {
    "name": Key(str, REQUIRED, NAME),
    "release": Key(str, REQUIRED, one_of("grizzly", "modern"),
                   "grizzly = quantum + keystone CLI, modern = neutron + openstack CLI"),
    "platform": Key(str, "auto", one_of("el6", "el7", "el8", "el9", "debian", "auto")),
    "topology": Key(str, "dedicated", one_of("dedicated", "colocated")),
}

SSH = {
    "user": Key(str, "root", NAME),
    "port": Key(int, 22, PORT),
    "identity": Key(str, None, LOCAL),
    "sudo": Key(bool, None),
    "sudo_password_env": Key(str, None, ENV),
    "known_hosts": Key(str, "~/.ssh/known_hosts", LOCAL),
    "host_key_policy": Key(str, "strict", one_of("strict", "accept-new"),
                           "strict refuses unknown keys; accept-new records them on first use"),
    "gateway": Key(str, None, matches(GATEWAY, "a jump host such as admin@bastion:22")),
    "config": Key(str, None, LOCAL),
    "connect_timeout": Key(float, 10.0, float_range(0, 3600),
                           "seconds to wait for an SSH connection, e.g. 10"),
}

VIP = {
    "address": Key(str, REQUIRED, ipv4, "the virtual IP, e.g. address = \"10.15.85.31\""),
    "prefix": Key(int, 24, in_range(8, 32)),
    "interface": Key(str, REQUIRED, matches(HOST_NAME, "an interface name such as eth0"),
                     "the interface that carries the VIP, e.g. interface = \"eth0\""),
    "virtual_router_id": Key(int, REQUIRED, in_range(1, 255),
                             "a VRRP router id unique on this network, 1..255"),
    "advert_int": Key(int, 1, in_range(1, 255)),
    "public_address": Key(str, None, ipv4,
                          "a second VIP for the public endpoints, e.g. \"203.0.113.10\""),
    "public_interface": Key(str, None, matches(HOST_NAME, "an interface name such as eth1")),
    "public_prefix": Key(int, None, in_range(8, 32)),
}

TLS = {
    "certificate": Key(str, REQUIRED, LOCAL,
                       "the PEM certificate (then its chain) clients see on the public VIP"),
    "key": Key(str, REQUIRED, LOCAL, "the certificate's PEM private key, mode 0600"),
    "name": Key(str, None, matches(HOST_NAME, "a DNS name such as cloud.example.com"),
                "the name clients use for the public VIP; the certificate must cover it"),
    "redirect_http": Key(bool, False),
}

KEEPALIVED = {
    "script_weight": Key(int, 10, in_range(1, 253)),
    "script_interval": Key(int, 2, in_range(1, 3600)),
    "script_fall": Key(int, 2, in_range(1, 100)),
    "script_rise": Key(int, 2, in_range(1, 100)),
    "nopreempt": Key(bool, False),
    "unicast": Key(bool, False),
    "auth_password_env": Key(str, None, ENV),
}

HAPROXY = {
    "mode": Key(str, "http", one_of("http", "tcp")),
    "maxconn": Key(int, 10000, in_range(1, 1_000_000)),
    "timeout_connect": Key(str, "10s", TIME),
    "timeout_client": Key(str, "10s", TIME),
    "timeout_server": Key(str, "10s", TIME),
    "check_inter": Key(str, "10s", TIME),
    "check_fastinter": Key(str, "500ms", TIME),
    "check_downinter": Key(str, "1s", TIME),
    "balance": Key(str, "roundrobin",
                   one_of("roundrobin", "static-rr", "leastconn", "first", "source")),
    "stats_socket": Key(str, "/var/lib/haproxy/stats", PATH),
    "frontend_name": Key(str, "{proxy}-vip"),
    "backend_name": Key(str, "{proxy}-api"),
    "catalog_options": Key(bool, True),
    "monitor": Key(dict, None),
    "overrides": Key(dict, {}),
}

# One line of haproxy configuration: printable, no newline; `haproxy -c` judges the rest.
HAPROXY_LINE = matches(re.compile(r"[ -~]{1,255}"),
                       "one line of printable ASCII (haproxy -c checks what it means)")

OVERRIDE = {
    "frontend": Key(list, [], str_list(HAPROXY_LINE)),
    "backend": Key(list, [], str_list(HAPROXY_LINE)),
    "server": Key(list, [], str_list(HAPROXY_LINE)),
}

MONITOR = {
    "port": Key(int, 9300, PORT),
    "uri": Key(str, "/status", matches(URI_PATH, "a URI path such as /status")),
    "stats_uri": Key(str, "/admin", matches(URI_PATH, "a URI path such as /admin")),
    "stats_user": Key(str, "admin", NAME),
    "stats_password_env": Key(str, "HADEPLOY_STATS_PASSWORD", ENV),
    "stats_realm": Key(str, "Haproxy Statistics",
                       matches(re.compile(r"[A-Za-z0-9 ._-]{1,64}"),
                               "plain words (letters, digits, spaces)")),
    "stats_refresh": Key(str, "5s", TIME),
    "metrics": Key(bool, False),
    "metrics_uri": Key(str, "/metrics", matches(URI_PATH, "a URI path such as /metrics")),
}

NODE = {
    "name": Key(str, REQUIRED, NAME),
    "address": Key(str, REQUIRED, ipv4),
    "ssh_host": Key(str, None, matches(HOST_NAME, "a host name or address")),
    "priority": Key(int, None, in_range(1, 254)),
    "api_bind": Key(str, None, ipv4),
    "original": Key(bool, False),
    "retire": Key(bool, False),  # a controller leaving: out of haproxy, its services stopped
}

SERVICES = {
    "balance": Key(list, REQUIRED, str_list(NAME), "the services to put behind the VIP"),
    "omit_proxies": Key(list, [], str_list(NAME)),
    "shared_storage": Key(list, [], str_list(NAME),
                          "services whose node-local-looking state you confirm is shared"),
}

OPENSTACK = {
    "admin_credentials": Key(str, "/root/keystonerc_admin", PATH),
    "region": Key(str, "RegionOne", NAME),
    "rc_files": Key(list, []),
}

RC_FILE = {
    "host": Key(str, REQUIRED, NAME),
    "path": Key(str, REQUIRED, PATH),
}
