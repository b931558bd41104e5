"""Read an inventory file, check every rule, and build the frozen `Inventory`.

Nothing here touches the network: validation happens before any connection is attempted,
and it reports every problem in one `InventoryError` instead of stopping at the first.
"""

from __future__ import annotations

import hashlib
import tomllib
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import hadeploy.inventory.tables as tables
from hadeploy.errors import InventoryError
from hadeploy.inventory.model import (
    HaproxySettings,
    Inventory,
    KeepalivedSettings,
    Monitor,
    Node,
    OpenStackSettings,
    ProxyOverride,
    RcFile,
    SshSettings,
    Tls,
    Vip,
)
from hadeploy.inventory.rules import check_rules
from hadeploy.inventory.schema import Key, check_table, kind_name

MAX_BYTES = 1024 * 1024


def read_toml(path: Path) -> tuple[dict[str, Any], bytes]:
    """Parse the TOML file at `path`, turning every failure into an `InventoryError`."""
    name = str(path)
    if not path.exists():
        raise InventoryError(name, [
            "file not found; copy hosts.example.toml to hosts.toml and edit it, "
            "or pass --hosts FILE (or set HADEPLOY_HOSTS)"
        ])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InventoryError(name, [f"cannot be read: {exc.strerror}"]) from exc
    if len(raw) > MAX_BYTES:
        raise InventoryError(name, [f"{len(raw)} bytes is too large for an inventory (1 MiB)"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InventoryError(name, [
            f"not UTF-8 text (invalid byte at line {line}); save the file as UTF-8"
        ]) from exc
    if not text.strip():
        raise InventoryError(name, [
            "the file is empty; start from hosts.example.toml"
        ])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(name, [f"not valid TOML: {exc}; fix the syntax there"]) from exc
    return data, raw


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate the inventory at `path`; raise `InventoryError` listing every problem."""
    path = Path(path)
    data, raw = read_toml(path)
    problems: list[str] = []
    inventory = build_inventory(data, str(path), hashlib.sha256(raw).hexdigest(), problems)
    if problems or inventory is None:
        raise InventoryError(str(path), problems)
    return inventory


def _table(data: dict[str, Any], key: str, schema: dict[str, Key], where: str,
           problems: list[str], required: bool = True) -> dict[str, Any] | None:
    """Check one top-level table; None when it is missing or not a table."""
    if key not in data:
        if required:
            problems.append(f"[{key}]: missing table; see hosts.example.toml")
            return None
        data = {**data, key: {}}
    table = data[key]
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table ([{key}]), not {kind_name(type(table))}")
        return None
    values, found = check_table(table, schema, where)
    problems.extend(found)
    return values


def _nodes(data: dict[str, Any], key: str, role: str, problems: list[str]) -> list[Node]:
    """Check an array of node tables ([[lb]] or [[controller]])."""
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append(f"{key}: must be an array of tables written [[{key}]]")
        return []
    nodes: list[Node] = []
    for index, entry in enumerate(entries, start=1):
        label = entry.get("name") if isinstance(entry.get("name"), str) else None
        where = f"{key} #{index}" + (f" ({label})" if label and len(label) < 64 else "")
        values, found = check_table(entry, tables.NODE, where)
        problems.extend(found)
        if found:
            continue
        nodes.append(Node(
            name=values["name"],
            address=IPv4Address(values["address"]),
            ssh_host=values["ssh_host"],
            priority=values["priority"],
            api_bind=IPv4Address(values["api_bind"]) if values["api_bind"] else None,
            original=values["original"],
            role="lb" if role == "lb" else "controller",
            retire=values["retire"],
        ))
    return nodes


def _rc_files(values: dict[str, Any], problems: list[str]) -> tuple[RcFile, ...]:
    """Check openstack.rc_files, a list of {host, path} tables."""
    found: list[RcFile] = []
    for index, entry in enumerate(values.get("rc_files", []), start=1):
        where = f"openstack.rc_files #{index}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table such as {{host = \"ctl1\", path = \"/root"
                            "/keystonerc_admin\"}")
            continue
        rc, errors = check_table(entry, tables.RC_FILE, where)
        problems.extend(errors)
        if not errors:
            found.append(RcFile(host=rc["host"], path=rc["path"]))
    return tuple(found)


def _overrides(haproxy: dict[str, Any], problems: list[str]) -> tuple[ProxyOverride, ...]:
    """Check [haproxy.overrides.PROXY] tables (which proxies exist is a rule, checked later)."""
    found: list[ProxyOverride] = []
    for proxy, table in haproxy.get("overrides", {}).items():
        where = f"haproxy.overrides.{proxy if len(proxy) <= 40 else proxy[:30] + '...'}"
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table with frontend, backend or server lists")
            continue
        values, errors = check_table(table, tables.OVERRIDE, where)
        problems.extend(errors)
        if not errors:
            found.append(ProxyOverride(proxy, *(tuple(values[k])
                                                for k in ("frontend", "backend", "server"))))
    return tuple(found)


def build_inventory(data: dict[str, Any], path: str, fingerprint: str,
                    problems: list[str]) -> Inventory | None:
    """Check parsed TOML `data`; append every problem to `problems`; build when none."""
    for key in data:
        if key not in tables.TOP_LEVEL:
            problems.append(
                f"{key}: unknown table; known tables are {', '.join(tables.TOP_LEVEL)}"
            )
    deployment = _table(data, "deployment", tables.DEPLOYMENT, "deployment", problems)
    ssh = _table(data, "ssh", tables.SSH, "ssh", problems, required=False)
    vip = _table(data, "vip", tables.VIP, "vip", problems)
    keepalived = _table(data, "keepalived", tables.KEEPALIVED, "keepalived", problems,
                        required=False)
    haproxy = _table(data, "haproxy", tables.HAPROXY, "haproxy", problems, required=False)
    services = _table(data, "services", tables.SERVICES, "services", problems)
    openstack = _table(data, "openstack", tables.OPENSTACK, "openstack", problems,
                       required=False)
    tls = _table(data, "tls", tables.TLS, "tls", problems, required=False) \
        if "tls" in data else {}
    monitor_values: dict[str, Any] | None = None
    if haproxy is not None and haproxy.get("monitor") is not None:
        monitor_values, found = check_table(haproxy["monitor"], tables.MONITOR,
                                            "haproxy.monitor")
        problems.extend(found)
    overrides = _overrides(haproxy, problems) if haproxy is not None else ()
    lbs = _nodes(data, "lb", "lb", problems)
    controllers = _nodes(data, "controller", "controller", problems)
    rc_files = _rc_files(openstack, problems) if openstack is not None else ()
    if problems or None in (deployment, ssh, vip, keepalived, haproxy, services, openstack,
                            tls):
        return None
    assert deployment and ssh is not None and vip and keepalived is not None
    assert haproxy is not None and services and openstack is not None

    sudo = ssh["sudo"] if ssh["sudo"] is not None else ssh["user"] != "root"
    monitor = Monitor(**monitor_values) if monitor_values is not None else None
    inventory = Inventory(
        path=path,
        fingerprint=fingerprint,
        name=deployment["name"],
        release=deployment["release"],
        platform=deployment["platform"],
        topology=deployment["topology"],
        ssh=SshSettings(**{**ssh, "sudo": sudo, "connect_timeout": float(ssh["connect_timeout"])}),
        vip=Vip(**{**vip, "address": IPv4Address(vip["address"]),
                   "public_address": IPv4Address(vip["public_address"])
                   if vip["public_address"] else None}),
        keepalived=KeepalivedSettings(**keepalived),
        haproxy=HaproxySettings(**{**haproxy, "monitor": monitor, "overrides": overrides}),
        lbs=tuple(lbs),
        controllers=tuple(c for c in controllers if not c.retire),
        retired=tuple(c for c in controllers if c.retire),
        services=tuple(services["balance"]),
        omit_proxies=tuple(services["omit_proxies"]),
        shared_storage=tuple(services["shared_storage"]),
        openstack=OpenStackSettings(
            admin_credentials=openstack["admin_credentials"],
            region=openstack["region"],
            rc_files=rc_files,
        ),
        tls=Tls(**tls) if tls else None,
    )
    problems.extend(check_rules(inventory))
    return None if problems else inventory
