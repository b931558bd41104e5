"""The service catalog shipped in the package: complete, consistent, and right where the
guides are wrong."""

from __future__ import annotations

import copy
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hadeploy.catalog import FAMILIES, RELEASES, Catalog, load_catalog, parse_catalog
from hadeploy.errors import CatalogError


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def raw_catalog() -> dict[str, Any]:
    text = resources.files("hadeploy.catalog").joinpath("services.toml").read_text("utf-8")
    return tomllib.loads(text)


def test_known_services(catalog: Catalog) -> None:
    assert catalog.names() == ["ceilometer", "cinder", "galera", "glance", "heat", "horizon",
                               "keystone", "neutron", "nova", "novnc", "placement", "quantum",
                               "rabbitmq", "swift"]


def test_every_scaled_service_has_packages_and_daemons(catalog: Catalog) -> None:
    for service in catalog.services.values():
        assert service.releases and set(service.releases) <= set(RELEASES), service.name
        if service.lb_only:
            # hadeploy installs nothing of a database or broker: their variants only say
            # where the operator binds them (for the co-located preflight's advice)
            assert not service.etc, service.name
            assert all(v.binds for v in service.variants), service.name
            continue
        for family in FAMILIES:
            for release in service.releases:
                variant = service.variant(family, release)
                assert variant.packages, (service.name, family, release)
                assert variant.daemons, (service.name, family, release)
                assert all(p and " " not in p for p in (*variant.packages, *variant.daemons))


def test_a_missing_variant_is_an_error(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="quantum has no packages for el/modern"):
        catalog["quantum"].variant("el", "modern")


def test_ports_unique_per_release(catalog: Catalog) -> None:
    for release in RELEASES:
        ports = Counter(p.port for s in catalog.services.values() if release in s.releases
                        for p in s.proxies_for(release))
        assert [port for port, n in ports.items() if n > 1] == [], release


def test_proxy_names_unique(catalog: Catalog) -> None:
    names = [p.name for s in catalog.services.values() for p in s.proxies]
    assert len(names) == len(set(names))
    assert catalog.proxy_names() == sorted(names)


def test_glance_ports_corrected(catalog: Catalog) -> None:
    ports = {p.name: p.port for p in catalog["glance"].proxies}
    assert ports == {"glance": 9292, "glance-registry": 9191}


def test_guide_ports(catalog: Catalog) -> None:
    ports = {p.name: p.port for s in catalog.services.values() for p in s.proxies}
    assert ports == {
        "keystone-admin": 35357, "keystone-public": 5000, "quantum": 9696, "neutron": 9696,
        "glance": 9292, "glance-registry": 9191, "nova-ec2": 8773, "nova-compute": 8774,
        "nova-metadata": 8775, "cinder": 8776, "swift": 8080, "nova-novncproxy": 6080,
        "horizon": 80, "heat-cfn": 8000, "heat-cloudwatch": 8003, "heat-api": 8004,
        "ceilometer": 8777, "galera": 3306, "rabbitmq": 5672, "placement": 8778,
    }


def test_release_specific_proxies(catalog: Catalog) -> None:
    assert [p.name for p in catalog["nova"].proxies_for("grizzly")] == [
        "nova-ec2", "nova-compute", "nova-metadata"]
    assert [p.name for p in catalog["nova"].proxies_for("modern")] == [
        "nova-compute", "nova-metadata"]
    assert catalog["quantum"].releases == ("grizzly",)
    assert catalog["neutron"].releases == ("modern",)


def test_modern_proxies_are_the_services_that_exist_today(catalog: Catalog) -> None:
    """Keystone v3 has one port; glance-registry, nova-ec2, heat-cloudwatch and the
    ceilometer API are gone; Placement is new."""
    modern = {p.name: p.port for s in catalog.services.values() if "modern" in s.releases
              for p in s.proxies_for("modern")}
    gone = {"keystone-admin", "glance-registry", "nova-ec2", "heat-cloudwatch", "ceilometer",
            "quantum"}
    assert gone.isdisjoint(modern)
    assert modern["keystone-public"] == 5000 and modern["placement"] == 8778
    grizzly = {p.name for s in catalog.services.values() if "grizzly" in s.releases
               for p in s.proxies_for("grizzly")}
    assert gone <= grizzly and "placement" not in grizzly
    assert catalog["ceilometer"].releases == ("grizzly",)
    assert "removed in Queens" in catalog["ceilometer"].unavailable


def test_modern_apis_are_checked_over_http_grizzly_over_tcp(catalog: Catalog) -> None:
    """A wedged API still accepts connections: on modern, haproxy asks the application."""
    checks = {p.name: (c.path, c.status) for s in catalog.services.values()
              if "modern" in s.releases for p in s.proxies_for("modern")
              if (c := p.http_check_for("modern")) is not None}
    assert checks == {
        "keystone-public": ("/v3", "200"), "neutron": ("/healthcheck", "200"),
        "glance": ("/healthcheck", "200"), "nova-compute": ("/", "200"),
        "nova-metadata": ("/healthcheck", "200"), "placement": ("/", "200"),
        "cinder": ("/healthcheck", "200"), "swift": ("/healthcheck", "200"),
        "horizon": ("/", "200-399"), "heat-cfn": ("/healthcheck", "200"),
        "heat-api": ("/healthcheck", "200"),
    }
    # TCP only: noVNC's pages changed names; galera has its own 9200 check; AMQP is not HTTP
    assert {p.name for s in catalog.services.values() if "modern" in s.releases
            for p in s.proxies_for("modern")} - set(checks) == {
        "nova-novncproxy", "galera", "rabbitmq"}
    assert [p.name for s in catalog.services.values() if "grizzly" in s.releases
            for p in s.proxies_for("grizzly") if p.http_check_for("grizzly") is not None] == []


def test_cinder_tree_is_copied(catalog: Catalog) -> None:
    assert catalog["cinder"].etc == "/etc/cinder"
    for name in ("keystone", "quantum", "neutron", "glance", "nova", "cinder", "heat"):
        assert catalog[name].etc == f"/etc/{name}"


def test_vip_keys_have_value_or_rehost(catalog: Catalog) -> None:
    for service in catalog.services.values():
        for key in service.vip_keys:
            assert bool(key.value) != key.rehost, (service.name, key.key)
            if key.value:
                assert "{vip}" in key.value, (service.name, key.key)
            assert key.file.startswith(f"{service.etc}/"), (service.name, key.file)
            assert key.release in ("any", *service.releases)


def test_host_keys(catalog: Catalog) -> None:
    for service in catalog.services.values():
        for key in service.host_keys:
            assert key.kind in ("address", "bind")
            assert key.file.startswith(f"{service.etc}/"), (service.name, key.file)


# Guide 1's edits on the original controller, as (file, section-agnostic key) -> value.
GUIDE1_VIP_KEYS = {
    ("/etc/quantum/quantum.conf", "auth_host"): "{vip}",
    ("/etc/quantum/api-paste.ini", "auth_host"): "{vip}",
    ("/etc/quantum/metadata_agent.ini", "auth_url"): "http://{vip}:35357/v2.0",
    ("/etc/quantum/metadata_agent.ini", "nova_metadata_ip"): "{vip}",
    ("/etc/glance/glance-api.conf", "registry_host"): "{vip}",
    ("/etc/glance/glance-api.conf", "auth_host"): "{vip}",
    ("/etc/glance/glance-registry.conf", "auth_host"): "{vip}",
    ("/etc/nova/nova.conf", "metadata_host"): "{vip}",
    ("/etc/nova/nova.conf", "quantum_admin_auth_url"): "http://{vip}:35357/v2.0",
    ("/etc/nova/nova.conf", "quantum_url"): "http://{vip}:9696",
    ("/etc/nova/nova.conf", "glance_api_servers"): "{vip}:9292",
    ("/etc/nova/api-paste.ini", "auth_host"): "{vip}",
    ("/etc/cinder/cinder.conf", "glance_host"): "{vip}",
    ("/etc/cinder/api-paste.ini", "service_host"): "{vip}",
    ("/etc/cinder/api-paste.ini", "auth_host"): "{vip}",
}


def test_guide1_vip_keys_for_grizzly(catalog: Catalog) -> None:
    found = {(k.file, k.key): k.value
             for s in catalog.services.values() if "grizzly" in s.releases
             for k in s.vip_keys_for("grizzly")}
    assert found == GUIDE1_VIP_KEYS
    paste = [k for s in catalog.services.values() for k in s.vip_keys_for("grizzly")
             if k.file.endswith("api-paste.ini")]
    assert {k.section for k in paste} == {"filter:authtoken"}


def test_guide1_packages_and_daemons_on_el(catalog: Catalog) -> None:
    expected = {
        "keystone": (("openstack-keystone",), ("openstack-keystone",)),
        "quantum": (("openstack-quantum", "openstack-quantum-openvswitch"),
                    ("quantum-server",)),
        "glance": (("openstack-glance",), ("openstack-glance-registry", "openstack-glance-api")),
        "nova": (("openstack-nova-api", "python-cinderclient"), ("openstack-nova-api",)),
        "cinder": (("openstack-cinder",), ("openstack-cinder-api",)),
    }
    for name, (packages, daemons) in expected.items():
        variant = catalog[name].variant("el", "grizzly")
        assert (variant.packages, variant.daemons) == (packages, daemons), name


def test_proxy_options_from_guide2(catalog: Catalog) -> None:
    proxies = {p.name: p for s in catalog.services.values() for p in s.proxies}
    assert proxies["galera"].check_port == 9200 and proxies["galera"].mode == "tcp"
    assert "stick-table type ip size 2" in proxies["galera"].backend
    assert proxies["rabbitmq"].mode == "tcp"
    assert "option clitcpka" in proxies["rabbitmq"].frontend
    assert "option srvtcpka" in proxies["rabbitmq"].backend
    assert proxies["horizon"].mode == "http" and proxies["horizon"].cookie
    for name in ("keystone-admin", "keystone-public", "horizon", "galera"):
        assert "on-marked-down shutdown-sessions" in proxies[name].server


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["services"]["cinder"]["proxies"][0].update(port=9292), "port 9292 used by"),
    (lambda d: d["services"]["cinder"]["vip_keys"][0].update(rehost=True),
     "glance_host needs value or rehost"),
    (lambda d: d["services"]["cinder"]["vip_keys"][0].pop("value"),
     "glance_host needs value or rehost"),
    (lambda d: d["services"]["cinder"]["proxies"][0].update(colour="red"), "unknown keys"),
    (lambda d: d["services"]["cinder"]["variants"].pop(), "no packages for debian"),
    (lambda d: d["services"]["cinder"]["proxies"][0]["http_check"].update(path="/a b"),
     "must be a plain absolute path"),
    (lambda d: d["services"]["cinder"]["proxies"][0]["http_check"].update(status="2xx"),
     "a list such as"),
    (lambda d: d["services"]["cinder"]["proxies"][0]["http_check"].update(verb="HEAD"),
     "unknown keys"),
    (lambda d: d["services"]["cinder"]["proxies"][0].update(http_check="GET /"),
     "http_check must be a table"),
    (lambda d: d["services"]["horizon"]["vip_keys"][0].update(section="DEFAULT"),
     "OPENSTACK_HOST: syntax is"),
    (lambda d: d["services"]["cinder"]["vip_keys"][0].update(syntax="yaml"),
     "glance_host: syntax is"),
    (lambda d: next(v for v in d["services"]["neutron"]["variants"] if "sysv_pid_names" in v)
     ["sysv_pid_names"].update({"neutron-serverr": "x"}), "neutron-serverr not among"),
    (lambda d: next(v for v in d["services"]["heat"]["variants"] if "workers" in v)
     ["workers"].append("heat-engin"), "workers: heat-engin not among"),
])
def test_parse_catalog_rejects_inconsistencies(mutate: Any, message: str) -> None:
    data = copy.deepcopy(raw_catalog())
    parse_catalog(copy.deepcopy(data))  # the shipped data is fine
    mutate(data)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(data)


def _readme_services() -> dict[str, list[str]]:
    """README's services reference table: service -> its other cells."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Services reference\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]
    return {row[0].strip("`"): row[1:] for row in rows}


def _proxy_cell(proxies: Any) -> str:
    return ", ".join(f"{p.name} ({p.port})" for p in proxies)


def test_readme_services_table_is_the_catalog(catalog: Catalog) -> None:
    """Every row of the README's table says what the catalog holds, and every service has one."""
    rows = _readme_services()
    assert sorted(rows) == catalog.names()
    for name, (grizzly, modern, check, daemons) in rows.items():
        service = catalog[name]
        for release, cell in (("grizzly", grizzly), ("modern", modern)):
            if release in service.releases:
                assert cell == _proxy_cell(service.proxies_for(release)), (name, release)
            else:
                assert cell.startswith(("—", "refused")), (name, release)
        if "modern" not in service.releases:
            assert check == daemons == "", name
            continue
        checks = {c for p in service.proxies_for("modern")
                  if (c := p.http_check_for("modern")) is not None}
        for c in checks:
            assert f"`GET {c.path}` → {c.status.replace('-', '–')}" in check, name
        assert ("TCP connect" in check) == (not checks and name != "galera"), name
        if service.lb_only:
            assert daemons == "balanced only", name
        else:
            assert daemons == ", ".join(service.variant("debian", "modern").daemons), name
