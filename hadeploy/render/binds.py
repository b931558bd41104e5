"""Edits that bind an API to one address where the address is not an ini key: the
/etc/default file of a Debian uwsgi init script, and apache `Listen` / `VirtualHost` lines;
and the listeners of the guide's supporting services (MariaDB's `bind-address`, RabbitMQ's
`NODE_IP_ADDRESS`), which their operator sets.

Pure text in, text out: the same edit is shown by `--dry-run` and applied on the host.
"""

from __future__ import annotations

import re
from ipaddress import ip_address

from hadeploy.catalog import Bind
from hadeploy.render.ini import set_ini_value
from hadeploy.render.shellrc import get_shell_var, set_shell_var

UWSGI_DEFAULT_NOTE = ("# hadeploy: uwsgi listens on this controller's own address only (haproxy "
                      "holds the same port on the VIP)\n")


def host_port(address: str, port: int) -> str:
    """`address:port`, with an IPv6 address in brackets."""
    host = f"[{address}]" if ip_address(address).version == 6 else address
    return f"{host}:{port}"


def _socket_arg(port: int) -> re.Pattern[str]:
    # --http-socket / --https-socket / --socket, then [addr]:PORT (https adds ,cert,key)
    return re.compile(rf"(--(?:https?-)?socket[ =])(\S*?):{port}(?=[,\s]|$)")


def bind_uwsgi_default(text: str, address: str, port: int, ini: str) -> str:
    """/etc/default/<daemon> text making the init script's uwsgi listen on `address:port`.

    The script computed `--http-socket :PORT --ini INI` before sourcing this file; a
    DAEMON_ARGS set here replaces it. One already set keeps its other arguments (workers,
    an https socket's certificate) and only the socket's address changes.
    """
    bound = host_port(address, port)
    current = get_shell_var(text, "DAEMON_ARGS")
    if current is None:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        return f'{prefix}{UWSGI_DEFAULT_NOTE}DAEMON_ARGS="--http-socket {bound} --ini {ini}"\n'
    pattern = _socket_arg(port)
    if pattern.search(current):
        args = pattern.sub(lambda m: f"{m.group(1)}{bound}", current)
    else:
        args = f"--http-socket {bound} {current}".rstrip()
    return text if args == current else set_shell_var(text, "DAEMON_ARGS", args)


LISTEN = re.compile(r"^(?P<lead>[ \t]*Listen[ \t]+)(?P<addr>\S+:)?(?P<port>\d+)(?P<rest>[^\n]*)$",
                    re.MULTILINE | re.IGNORECASE)
VHOST = re.compile(r"^(?P<lead>[ \t]*<VirtualHost[ \t]+)(?P<addrs>[^>]*)(?P<end>>)",
                   re.MULTILINE | re.IGNORECASE)


def bind_apache_listen(text: str, address: str, port: int) -> str:
    """Apache conf text whose `Listen` lines for `port` name `address`, and whose
    `<VirtualHost addr:port>` lines naming another address name it too (`*` stays: it
    matches whatever the server listens on)."""
    bound = host_port(address, port)

    def listen(m: re.Match[str]) -> str:
        if int(m.group("port")) != port:
            return m.group(0)
        return f"{m.group('lead')}{bound}{m.group('rest')}"

    def vhost(m: re.Match[str]) -> str:
        addrs = []
        for item in m.group("addrs").split():
            host, _, item_port = item.rpartition(":")
            keep = host in ("", "*", "_default_") or item_port != str(port)
            addrs.append(item if keep else bound)
        return f"{m.group('lead')}{' '.join(addrs)}{m.group('end')}"

    return VHOST.sub(vhost, LISTEN.sub(listen, text))


def bind_mysql_address(text: str, address: str) -> str:
    """MariaDB/MySQL option file text whose `[mysqld] bind-address` is `address`."""
    return set_ini_value(text, "mysqld", "bind-address", address)


def bind_rabbitmq_env(text: str, address: str) -> str:
    """rabbitmq-env.conf text whose `NODE_IP_ADDRESS` (the AMQP listener) is `address`."""
    return set_shell_var(text, "NODE_IP_ADDRESS", address)


def render_bind(bind: Bind, text: str, address: str) -> str:
    """`text` of `bind.file` with the listen address of its kind set to `address`."""
    if bind.kind == "uwsgi-default":
        return bind_uwsgi_default(text, address, bind.port, bind.ini)
    if bind.kind == "apache-listen":
        return bind_apache_listen(text, address, bind.port)
    if bind.kind == "mysql-bind-address":
        return bind_mysql_address(text, address)
    return bind_rabbitmq_env(text, address)


def bind_setting(bind: Bind) -> str:
    """In words, the setting of `bind.file` that names the listen address."""
    return {
        "uwsgi-default": "DAEMON_ARGS (--http-socket ADDRESS:PORT)",
        "apache-listen": "the Listen lines",
        "mysql-bind-address": "bind-address in [mysqld]",
        "rabbitmq-env": "NODE_IP_ADDRESS",
    }[bind.kind] + f" in {bind.file}"
