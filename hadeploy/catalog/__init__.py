"""The service catalog: OpenStack services, their proxies, packages and config keys, as data.

The data lives in `services.toml` next to this module; this module only turns it into frozen
values and answers questions about it (which proxies a release balances, which packages a
platform family installs). Nothing here knows about hosts or SSH.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any, Literal

from hadeploy.errors import CatalogError

Release = Literal["grizzly", "modern"]
Family = Literal["el", "debian"]
RELEASES: tuple[Release, ...] = ("grizzly", "modern")
FAMILIES: tuple[Family, ...] = ("el", "debian")


# haproxy's `http-check expect status` list: codes and ranges, comma-separated.
STATUS_LIST = re.compile(r"[1-5][0-9]{2}(-[1-5][0-9]{2})?(,[1-5][0-9]{2}(-[1-5][0-9]{2})?)*")
# A request path haproxy reads as one word and a shell argument needs no quoting for.
CHECK_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class HttpCheck:
    """What an API must answer to count as up: `GET path` with a status in `status` (haproxy's
    list of codes and ranges, e.g. "200" or "200-399"). haproxy's health checks and the
    controllers' verify step both ask it, so they agree on what "up" means."""

    path: str
    status: str
    release: str = "any"


@dataclass(frozen=True)
class Proxy:
    """One haproxy frontend/backend pair: a port the VIP answers on for a service."""

    name: str
    port: int
    release: str = "any"
    mode: str = ""
    balance: str | None = None
    check_port: int | None = None
    cookie: bool = False
    # Servers after the first are `backup` (with catalog_options): one node at a time.
    standby: bool = False
    frontend: tuple[str, ...] = ()
    backend: tuple[str, ...] = ()
    server: tuple[str, ...] = ()
    # The application-level health check (None: a TCP connect is all haproxy can ask).
    http_check: HttpCheck | None = None

    def http_check_for(self, release: Release) -> HttpCheck | None:
        """The HTTP check of this proxy on `release`, if it has one there."""
        check = self.http_check
        return check if check is not None and check.release in ("any", release) else None


BindKind = Literal["uwsgi-default", "apache-listen", "mysql-bind-address", "rabbitmq-env"]
BIND_KINDS: tuple[BindKind, ...] = ("uwsgi-default", "apache-listen", "mysql-bind-address",
                                    "rabbitmq-env")


@dataclass(frozen=True)
class Bind:
    """Where a variant's API listen address lives outside the service's own ini keys (those
    are `HostKey`s of kind "bind"): a file the colocated topology rewrites per controller.

    `uwsgi-default`: `file` is /etc/default/<init script NAME>, read by Debian's
    openstack-pkg-tools init script after it computed DAEMON_ARGS; `port` and `ini` (the
    uwsgi ini the script passes with --ini) rebuild the arguments with the node's address.
    `apache-listen`: `file` is an apache conf whose `Listen [addr:]port` lines (and
    `<VirtualHost addr:port>` lines naming an address) are set to the node's address.
    `mysql-bind-address`: `bind-address` in the `[mysqld]` section of a MariaDB/MySQL option
    file. `rabbitmq-env`: `NODE_IP_ADDRESS` in rabbitmq-env.conf (the AMQP listener's address).
    """

    kind: BindKind
    file: str
    port: int
    ini: str = ""
    release: str = "any"


@dataclass(frozen=True)
class ShellVar:
    """A variable of a shell-sourced file (/etc/default/<name>) that a new controller must
    set as the original does, where the package's default differs from what the service
    needs (Debian's nova-consoleproxy runs spicehtml5 unless told novnc)."""

    file: str
    var: str
    value: str


@dataclass(frozen=True)
class Variant:
    """Packages and daemons of a service on one platform family and release."""

    family: Family
    release: str
    packages: tuple[str, ...]
    daemons: tuple[str, ...]
    # Why this variant's API cannot be bound to one address at all (empty: it can, through
    # its host_keys of kind "bind" and its `binds`). The colocated topology refuses such a
    # variant instead of half-working.
    binds_all: str = ""
    binds: tuple[Bind, ...] = ()
    # Directories outside the service's `etc` tree copied from the original like it (the
    # web server's enabled sites: the package's postinst enables others than the original
    # runs, e.g. Debian's default-ssl without mod_ssl, on which apache2 refuses to start).
    copies: tuple[str, ...] = ()
    shell_vars: tuple[ShellVar, ...] = ()
    # Where the sysv init scripts write each daemon's pid file (`DIR/DAEMON.pid`). Debian's
    # openstack-pkg-tools scripts answer `status` by `pidof` of the interpreter when no pid
    # file is named, so any other uwsgi on the host makes every such daemon look running.
    sysv_pid_dir: str = ""
    # (daemon, NAME) where the init script's NAME, which names the pid file, is not the
    # daemon's: neutron-api's script is NAME=neutron-server.
    sysv_pid_names: tuple[tuple[str, str], ...] = ()
    # Restart its daemons by a stop and a start under a sysv init: the init script's own
    # restart never restarts them (Debian 12's swift-proxy), and waiting for it to fail
    # before the fallback costs a minute per restart.
    sysv_stop_start: bool = False
    # Daemons among `daemons` that serve no balanced port (RPC consumers: conductor,
    # scheduler, engine, Neutron's RPC server). Their restart is not drained (draining the
    # node's APIs protects no request of theirs: the other controllers' workers take the
    # queue meanwhile), it comes before the APIs' (it overlaps the wait for the new
    # controllers' APIs), and a bind of the APIs never restarts them.
    workers: tuple[str, ...] = ()

    def binds_for(self, release: Release) -> tuple[Bind, ...]:
        """The bind files of this variant on `release`."""
        return tuple(b for b in self.binds if b.release in ("any", release))

    def api_daemons(self) -> tuple[str, ...]:
        """The daemons that serve the service's APIs: every daemon but the workers."""
        return tuple(d for d in self.daemons if d not in self.workers)

    def sysv_pidfiles(self, daemon: str) -> tuple[str, ...]:
        """The pid file of `daemon` under a sysv init (none known: empty)."""
        name = dict(self.sysv_pid_names).get(daemon, daemon)
        return (f"{self.sysv_pid_dir}/{name}.pid",) if self.sysv_pid_dir else ()


@dataclass(frozen=True)
class VipKey:
    """A key on the original controller that must name the VIP: an ini key, or with
    `syntax = "python"` a top-level string constant of a settings file (Horizon's
    OPENSTACK_HOST; `section` is then empty)."""

    file: str
    section: str
    key: str
    release: str = "any"
    value: str = ""
    rehost: bool = False
    if_present: bool = False
    syntax: str = "ini"


@dataclass(frozen=True)
class HostKey:
    """An ini key that must hold a controller's own address after the tree is copied."""

    file: str
    section: str
    key: str
    kind: Literal["address", "bind"]
    release: str = "any"


@dataclass(frozen=True)
class NodeLocal:
    """State a service keeps on the node that serves the request (Glance's file store), as
    the original's `file` shows it: the `layout` reader (`hadeploy.ops.shared_state`) finds
    the backends in use; one of a type in `types` keeps `state` in a directory (`default_path`
    unless the file names another) that every controller must share."""

    file: str
    layout: str
    types: tuple[str, ...]
    default_path: str
    state: str
    why: str
    fix: str
    release: str = "any"


@dataclass(frozen=True)
class Service:
    """One OpenStack (or supporting) service as the guides treat it."""

    name: str
    title: str
    etc: str
    releases: tuple[Release, ...]
    lb_only: bool
    proxies: tuple[Proxy, ...]
    variants: tuple[Variant, ...]
    vip_keys: tuple[VipKey, ...]
    host_keys: tuple[HostKey, ...]
    node_local: tuple[NodeLocal, ...] = ()
    # Why the service is missing from a release it does not list, with what to do instead.
    unavailable: str = ""
    # The ini file whose [oslo_middleware] enable_proxy_headers_parsing makes the API honour
    # X-Forwarded-Proto (modern); "" when the catalog knows no such key.
    proxy_headers: str = ""

    def proxy_header_keys(self, release: Release) -> tuple[VipKey, ...]:
        """The key that makes the API build https links behind TLS termination, if any."""
        if not self.proxy_headers or release == "grizzly":
            return ()
        return (VipKey(self.proxy_headers, "oslo_middleware", "enable_proxy_headers_parsing",
                       value="true"),)

    def proxies_for(self, release: Release) -> tuple[Proxy, ...]:
        """The proxies this service has on `release`."""
        return tuple(p for p in self.proxies if p.release in ("any", release))

    def variant(self, family: Family, release: Release) -> Variant:
        """Packages and daemons for a platform family and release."""
        for v in self.variants:
            if v.family == family and v.release in ("any", release):
                return v
        raise CatalogError(f"service {self.name} has no packages for {family}/{release}")

    def vip_keys_for(self, release: Release) -> tuple[VipKey, ...]:
        """The keys to point at the VIP on `release`."""
        return tuple(k for k in self.vip_keys if k.release in ("any", release))

    def host_keys_for(self, release: Release) -> tuple[HostKey, ...]:
        """The per-controller keys to rewrite on `release`."""
        return tuple(k for k in self.host_keys if k.release in ("any", release))

    def node_local_for(self, release: Release) -> tuple[NodeLocal, ...]:
        """The node-local state to look for on `release`."""
        return tuple(n for n in self.node_local if n.release in ("any", release))


@dataclass(frozen=True)
class Catalog:
    """Every service hadeploy knows, by name."""

    services: dict[str, Service]

    def names(self) -> list[str]:
        """Known service names, sorted."""
        return sorted(self.services)

    def proxy_names(self) -> list[str]:
        """Every proxy name of every service, sorted."""
        return sorted({p.name for s in self.services.values() for p in s.proxies})

    def __getitem__(self, name: str) -> Service:
        return self.services[name]


def _build(cls: type[Any], raw: dict[str, Any], where: str) -> Any:
    """Build a dataclass from a TOML table, turning lists into tuples."""
    fields = set(cls.__dataclass_fields__)
    unknown = set(raw) - fields
    if unknown:
        raise CatalogError(f"catalog {where}: unknown keys {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise CatalogError(f"catalog {where}: {exc}") from exc


def _variant(raw: dict[str, Any], where: str) -> Variant:
    """A variant with its `binds` sub-tables, each checked for its kind's fields."""
    raw = dict(raw)
    binds = tuple(_build(Bind, b, f"{where}.binds") for b in raw.pop("binds", []))
    shell_vars = tuple(_build(ShellVar, v, f"{where}.shell_vars")
                       for v in raw.pop("shell_vars", []))
    pid_names = tuple(sorted(raw.pop("sysv_pid_names", {}).items()))
    strays = sorted({d for d, _ in pid_names} - set(raw.get("daemons", ())))
    if strays:
        raise CatalogError(f"catalog {where}.sysv_pid_names: {', '.join(strays)} not among "
                           "the variant's daemons")
    strays = sorted(set(raw.get("workers", ())) - set(raw.get("daemons", ())))
    if strays:
        raise CatalogError(f"catalog {where}.workers: {', '.join(strays)} not among the "
                           "variant's daemons")
    for bind in binds:
        if bind.kind not in BIND_KINDS:
            raise CatalogError(f"catalog {where}.binds: kind {bind.kind!r} is not one of "
                               f"{', '.join(BIND_KINDS)}")
        if (bind.kind == "uwsgi-default") != bool(bind.ini):
            raise CatalogError(f"catalog {where}.binds: {bind.file}: ini is required by kind "
                               "uwsgi-default and only by it")
    variant: Variant = _build(Variant, raw, where)
    if binds and variant.binds_all:
        raise CatalogError(f"catalog {where}: binds and binds_all contradict each other")
    return replace(variant, binds=binds, shell_vars=shell_vars, sysv_pid_names=pid_names)


def _proxy(raw: dict[str, Any], where: str) -> Proxy:
    """A proxy table, with its optional `http_check` inline table checked."""
    raw = dict(raw)
    check_raw = raw.pop("http_check", None)
    check: HttpCheck | None = None
    if check_raw is not None:
        if not isinstance(check_raw, dict):
            raise CatalogError(f"catalog {where}: http_check must be a table")
        check = _build(HttpCheck, check_raw, f"{where}.http_check")
        if not CHECK_PATH.fullmatch(check.path) or not STATUS_LIST.fullmatch(check.status):
            raise CatalogError(
                f"catalog {where}.http_check: path {check.path!r} must be a plain absolute "
                f"path and status {check.status!r} a list such as \"200\" or \"200-399\"")
    proxy: Proxy = _build(Proxy, raw, where)
    return replace(proxy, http_check=check)


def parse_catalog(data: dict[str, Any]) -> Catalog:
    """Turn the catalog's TOML data into a `Catalog`, checking it for consistency."""
    services: dict[str, Service] = {}
    seen_ports: dict[tuple[int, str], str] = {}
    for name, raw in data.get("services", {}).items():
        where = f"services.{name}"
        proxies = tuple(_proxy(p, f"{where}.proxies") for p in raw.get("proxies", []))
        variants = tuple(_variant(v, f"{where}.variants") for v in raw.get("variants", []))
        vip_keys = tuple(_build(VipKey, k, f"{where}.vip_keys") for k in raw.get("vip_keys", []))
        host_keys = tuple(
            _build(HostKey, k, f"{where}.host_keys") for k in raw.get("host_keys", [])
        )
        node_local = tuple(
            _build(NodeLocal, n, f"{where}.node_local") for n in raw.get("node_local", [])
        )
        service = Service(
            name=name,
            title=raw["title"],
            etc=raw.get("etc", ""),
            releases=tuple(raw["releases"]),
            lb_only=bool(raw.get("lb_only", False)),
            proxies=proxies,
            variants=variants,
            vip_keys=vip_keys,
            host_keys=host_keys,
            node_local=node_local,
            unavailable=raw.get("unavailable", ""),
            proxy_headers=raw.get("proxy_headers", ""),
        )
        for proxy in proxies:
            for release in service.releases:
                if proxy.release not in ("any", release):
                    continue
                key = (proxy.port, release)
                if key in seen_ports:
                    raise CatalogError(
                        f"catalog: port {proxy.port} used by {seen_ports[key]} and {proxy.name}"
                    )
                seen_ports[key] = proxy.name
        for key_def in vip_keys:
            if bool(key_def.value) == key_def.rehost:
                raise CatalogError(f"catalog {where}: {key_def.key} needs value or rehost")
            if key_def.syntax not in ("ini", "python") or (
                    key_def.syntax == "python" and (key_def.section or key_def.rehost)):
                raise CatalogError(
                    f"catalog {where}: {key_def.key}: syntax is \"ini\" or \"python\" (a "
                    "string constant: no section, a value rather than rehost)")
        if not service.lb_only:
            for family in FAMILIES:
                for release in service.releases:
                    service.variant(family, release)
        services[name] = service
    return Catalog(services=services)


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with hadeploy (parsed once per process)."""
    text = resources.files("hadeploy.catalog").joinpath("services.toml").read_text("utf-8")
    return parse_catalog(tomllib.loads(text))
