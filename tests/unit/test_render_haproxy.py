"""haproxy.cfg: the guides' configurations reproduced section by section, golden files, and
the real `haproxy -c` on everything we render."""

from __future__ import annotations

import base64
import copy
import dataclasses
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadeploy.inventory import Inventory, load_inventory
from hadeploy.render import balanced_proxies, render_haproxy_cfg
from hadeploy.render.haproxy import haproxy_word, hard_stop_after
from hadeploy.render.haproxy_defaults import render_haproxy_defaults
from tests.unit.examples import COLOCATED, GUIDES, HOSTS_EXAMPLE, SHARED_GUIDES, edit
from tests.unit.golden_files import assert_golden
from tests.unit.guide_blocks import heredoc, indented_block_after, read_guide
from tests.unit.haproxy_sections import Section, by_name, parse_haproxy
from tests.unit.strategies import encodable_text

GUIDE1 = "load-balance-openstack-api.md"
GUIDE2 = "haproxy-on-controllers.md"
PASSWORD_ENV = "HADEPLOY_STATS_PASSWORD"
# Added to every rendering's defaults (the examples are EL: haproxy 1.5's form): a refused
# connection is tried again on another server instead of failing the client's request, and
# a server changing state (or DOWN) is checked more often than a steady one.
REDISPATCH = ["retries 3", "option redispatch",
              "default-server fastinter 500ms downinter 1s"]
# Debian's http backends: a GET or HEAD whose server closed without answering is retried.
L7_RETRIES = ["retry-on conn-failure empty-response junk-response",
              "http-request disable-l7-retry if !METH_GET"]
INDENT = "    "
HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy; .ci/run does)"
)


def guide1_cfg() -> list[Section]:
    """The haproxy.cfg of guide 1, parsed out of the markdown."""
    text = read_guide(GUIDES, GUIDE1)
    return parse_haproxy(
        indented_block_after(text, "In the example below shows a very simple haproxy.cfg")
    )


def guide2_cfg() -> list[Section]:
    """The haproxy.cfg of guide 2: the here-document under "Configure HAProxy"."""
    text = read_guide(GUIDES, GUIDE2)
    block = indented_block_after(text, "Configure HAProxy")
    return parse_haproxy(heredoc(block, "cat > /etc/haproxy/haproxy.cfg"))


def sections_of(sections: list[Section], kind: str) -> list[Section]:
    return [s for s in sections if s.kind == kind]


def test_guides_are_verbatim_copies() -> None:
    if not SHARED_GUIDES.is_dir():
        pytest.skip(f"{SHARED_GUIDES} not present (clean clone): the copies are used as they are")
    for name in (GUIDE1, GUIDE2):
        assert (GUIDES / name).read_bytes() == (SHARED_GUIDES / name).read_bytes(), name


def test_guide_parsing_finds_the_whole_configurations() -> None:
    """Guards the parser: if it found less, the comparisons below would prove less."""
    g1 = guide1_cfg()
    assert [s.kind for s in g1[:2]] == ["global", "defaults"]
    assert len(sections_of(g1, "frontend")) == 9 and len(sections_of(g1, "backend")) == 9
    assert sum(len(s.servers) for s in g1) == 27
    g2 = guide2_cfg()
    assert [s.kind for s in g2[:3]] == ["global", "defaults", "listen"]
    assert len(sections_of(g2, "frontend")) == 17 and len(sections_of(g2, "backend")) == 17
    assert sum(len(s.servers) for s in g2) == 51


# ---------------------------------------------------------------------------------------------
# Guide 1: hosts.example.toml
# ---------------------------------------------------------------------------------------------

# The one correction: the guide swaps glance's ports (glance-api is 9292, the registry 9191).
GLANCE_FIX_GUIDE1 = {
    ("frontend", "glance-vip"): ("10.15.85.31:9191", "10.15.85.31:9292"),
    ("frontend", "glance-registry-vip"): ("10.15.85.31:9292", "10.15.85.31:9191"),
    ("backend", "glance-api"): (":9191 ", ":9292 "),
    ("backend", "glance-registry-api"): (":9292 ", ":9191 "),
}


def corrected(section: Section, fixes: dict[tuple[str, str], tuple[str, str]]) -> Section:
    fixed = copy.deepcopy(section)
    if (section.kind, section.name) in fixes:
        old, new = fixes[(section.kind, section.name)]
        fixed.lines = [line.replace(old, new) for line in fixed.lines]
    return fixed


def test_guide1_same_frontends_backends_servers_checks(example: Inventory) -> None:
    guide = guide1_cfg()
    ours = parse_haproxy(render_haproxy_cfg(example))
    assert {(s.kind, s.name) for s in ours} == {(s.kind, s.name) for s in guide}
    for kind in ("frontend", "backend"):
        assert [s.name for s in sections_of(ours, kind)] == [
            s.name for s in sections_of(guide, kind)
        ], f"{kind}s in another order than the guide"
    mine = {(s.kind, s.name): s for s in ours}
    differing = set()
    for section in guide:
        key = (section.kind, section.name)
        if section.kind in ("frontend", "backend") and section.lines != mine[key].lines:
            differing.add(key)
        fixed = corrected(section, GLANCE_FIX_GUIDE1)
        if section.kind == "defaults":
            assert mine[key].lines == section.lines + REDISPATCH, key
            continue
        if section.kind == "global":
            assert set(section.lines) <= set(mine[key].lines)
            continue
        assert mine[key].binds == fixed.binds, key
        assert mine[key].options == fixed.options, key
        assert mine[key].servers == fixed.servers, key
    assert differing == set(GLANCE_FIX_GUIDE1), "only glance's ports may differ from the guide"


def test_guide1_glance_is_exactly_the_corrected_difference(example: Inventory) -> None:
    guide = {(s.kind, s.name): s for s in guide1_cfg()}
    ours = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(example))}
    assert guide["frontend", "glance-vip"].binds == ["10.15.85.31:9191"]
    assert ours["frontend", "glance-vip"].binds == ["10.15.85.31:9292"]
    assert ours["frontend", "glance-vip"].value("default_backend") == "glance-api"
    assert guide["frontend", "glance-registry-vip"].binds == ["10.15.85.31:9292"]
    assert ours["frontend", "glance-registry-vip"].binds == ["10.15.85.31:9191"]
    assert ours["frontend", "glance-registry-vip"].value("default_backend") == "glance-registry-api"
    assert ours["backend", "glance-api"].servers == [
        f"server mesa-virt-0{i} 10.15.85.14{i}:9292 check inter 10s" for i in (1, 2, 3)
    ]
    assert ours["backend", "glance-registry-api"].servers == [
        f"server mesa-virt-0{i} 10.15.85.14{i}:9191 check inter 10s" for i in (1, 2, 3)
    ]


def test_guide1_every_server_is_checked_every_10s(example: Inventory) -> None:
    for section in parse_haproxy(render_haproxy_cfg(example)):
        for server in section.servers:
            assert server.endswith(" check inter 10s"), server
        if section.kind == "backend":
            assert section.value("balance") == "roundrobin"
            assert [s.split()[1] for s in section.servers] == [
                "mesa-virt-01", "mesa-virt-02", "mesa-virt-03"
            ]


# ---------------------------------------------------------------------------------------------
# Guide 2: tests/data/guide2-rhos6.toml
# ---------------------------------------------------------------------------------------------

# Guide 2's section names -> ours (template vip-{proxy} / {proxy}-vms and catalog proxy names).
FRONTENDS2 = {
    "vip-db": "vip-galera",
    "vip-rabbitmq": "vip-rabbitmq",
    "vip-keystone-admin": "vip-keystone-admin",
    "vip-keystone-public": "vip-keystone-public",
    "vip-glance-api": "vip-glance",
    "vip-glance-registry": "vip-glance-registry",
    "vip-cinder": "vip-cinder",
    "vip-swift": "vip-swift",
    "vip-neutron": "vip-neutron",
    "vip-nova-vnc-novncproxy": "vip-nova-novncproxy",
    "nova-metadata-vms": "vip-nova-metadata",  # the guide names this frontend like a backend
    "vip-nova-api": "vip-nova-compute",
    "vip-horizon": "vip-horizon",
    "vip-heat-cfn": "vip-heat-cfn",
    "vip-heat-cloudw": "vip-heat-cloudwatch",
    "vip-heat-srv": "vip-heat-api",
    "vip-ceilometer": "vip-ceilometer",
}
BACKENDS2 = {
    "db-vms-galera": "galera-vms",
    "rabbitmq-vms": "rabbitmq-vms",
    "keystone-admin-vms": "keystone-admin-vms",
    "keystone-public-vms": "keystone-public-vms",
    "glance-api-vms": "glance-vms",
    "glance-registry-vms": "glance-registry-vms",
    "cinder-vms": "cinder-vms",
    "swift-vms": "swift-vms",
    "neutron-vms": "neutron-vms",
    "nova-vnc-novncproxy-vms": "nova-novncproxy-vms",
    "nova-metadata-vms": "nova-metadata-vms",
    "nova-api-vms": "nova-compute-vms",
    "horizon-vms": "horizon-vms",
    "heat-cfn-vms": "heat-cfn-vms",
    "heat-cloudw-vms": "heat-cloudwatch-vms",
    "heat-srv-vms": "heat-api-vms",
    "ceilometer-vms": "ceilometer-vms",
}
COOKIE_LINE = "cookie SERVERID insert indirect nocache"
# Guide 2 (RHOS 6, Juno) balances APIs that no longer exist: the example is modern, so hadeploy
# renders none of these (Keystone v3 has one port; glance-registry, heat-api-cloudwatch and
# ceilometer's API were removed).
GONE2 = {(kind, name) for proxy in ("keystone-admin", "glance-registry", "heat-cloudwatch",
                                    "ceilometer")
         for kind, name in (("frontend", f"vip-{proxy}"), ("backend", f"{proxy}-vms"))}
# Guide 2 checks every API with a TCP connect; modern backends ask the application itself
# (the requests and statuses of Debian 12's packages, see services.toml).
HTTP_CHECKS2 = {
    "keystone-public-vms": ("/v3", "200"), "glance-vms": ("/healthcheck", "200"),
    "cinder-vms": ("/healthcheck", "200"), "swift-vms": ("/healthcheck", "200"),
    "neutron-vms": ("/healthcheck", "200"), "nova-metadata-vms": ("/healthcheck", "200"),
    "nova-compute-vms": ("/", "200"), "horizon-vms": ("/", "200-399"),
    "heat-cfn-vms": ("/healthcheck", "200"), "heat-api-vms": ("/healthcheck", "200"),
}


def translated_guide2() -> list[Section]:
    """Guide 2 with its names mapped to ours (no other change)."""
    out = []
    for section in guide2_cfg():
        s = copy.deepcopy(section)
        if s.kind == "frontend":
            s.name = FRONTENDS2[s.name]
            s.lines = [
                f"default_backend {BACKENDS2[line.split()[1]]}"
                if line.startswith("default_backend ") else line
                for line in s.lines
            ]
        elif s.kind == "backend":
            s.name = BACKENDS2[s.name]
        out.append(s)
    return out


def corrected_guide2(password: str) -> list[Section]:
    """Guide 2 as hadeploy means to reproduce it: each difference named here, nothing else."""
    out = []
    for s in translated_guide2():
        s = copy.deepcopy(s)
        key = (s.kind, s.name)
        if key in GONE2:
            continue
        if key == ("listen", "monitor"):  # the guide's typo and literal password
            s.lines = [f"stats auth root:{password}" if line == "stats authroot:redhat" else line
                       for line in s.lines]
        if key == ("defaults", ""):  # refused connections tried on another server
            s.lines = [*s.lines, *REDISPATCH]
        if key == ("global", ""):  # the admin socket is restricted to root
            s.lines = [line + " mode 600 level admin" if line.startswith("stats socket ")
                       else line for line in s.lines]
        # glance-api is 9292; an upload is answered after Keystone round trips, long
        # transfers stall: the catalog's 6h timeouts (a 10 s one answered uploads with 504)
        if key == ("frontend", "vip-glance"):
            s.lines = [*(line.replace(":9191", ":9292") for line in s.lines),
                       "timeout client 6h"]
        if key == ("backend", "glance-vms"):
            s.lines = [*(line.replace(":9191 ", ":9292 ") for line in s.lines),
                       "timeout server 6h"]
        if key == ("frontend", "vip-horizon"):  # a cookie needs http mode, in the backend
            s.lines = [line for line in s.lines if line != COOKIE_LINE] + ["mode http"]
        if s.kind == "backend" and s.name in HTTP_CHECKS2:
            path, status = HTTP_CHECKS2[s.name]
            s.lines = [*s.lines, f"option httpchk GET {path}",
                       f"http-check expect status {status}"]
        if key == ("backend", "galera-vms"):  # one writer: every node after the first backup
            first = next(i for i, line in enumerate(s.lines) if line.startswith("server "))
            s.lines = [line + " backup" if i > first and line.startswith("server ") else line
                       for i, line in enumerate(s.lines)]
        if key == ("backend", "horizon-vms"):
            s.lines = [*s.lines, "mode http", COOKIE_LINE]
            # server cookies are the node names (the guide's rhos6-horizonN are arbitrary)
            s.lines = [line.replace("cookie rhos6-horizon", "cookie rhos6-node")
                       for line in s.lines]
        out.append(s)
    return out


@pytest.mark.parametrize("password", [None, "s3cret-Pw"])
def test_guide2_equivalent_section_by_section(colocated: Inventory, password: str | None) -> None:
    secrets = None if password is None else {PASSWORD_ENV: password}
    ours = parse_haproxy(render_haproxy_cfg(colocated, secrets))
    expected = corrected_guide2(password or "********")
    assert [(s.kind, s.name) for s in ours if s.kind in ("global", "defaults", "listen")] == [
        ("global", ""), ("defaults", ""), ("listen", "monitor")
    ]
    for kind in ("global", "defaults", "listen", "frontend", "backend"):
        want, got = by_name(expected, kind), by_name(ours, kind)
        assert sorted(got) == sorted(want), f"{kind} names differ"
        for name, section in want.items():
            assert got[name].binds == section.binds, (kind, name)
            assert got[name].options == section.options, (kind, name)
            assert got[name].servers == section.servers, (kind, name)


def test_guide2_differences_are_exactly_the_named_ones(colocated: Inventory) -> None:
    """Without the corrections above, exactly these sections differ: none slipped in."""
    raw = {(s.kind, s.name): s for s in translated_guide2()}
    ours = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(colocated))}
    assert set(raw) - set(ours) == GONE2 and set(ours) <= set(raw)
    differing = {
        key for key, s in raw.items() if key not in GONE2
        if (s.binds, s.options, s.servers) != (ours[key].binds, ours[key].options,
                                               ours[key].servers)
    }
    assert differing == {
        ("global", ""), ("defaults", ""), ("listen", "monitor"),
        ("frontend", "vip-glance"), ("backend", "glance-vms"),
        ("frontend", "vip-horizon"), ("backend", "horizon-vms"), ("backend", "galera-vms"),
        *(("backend", name) for name in HTTP_CHECKS2),
    }
    assert "stats authroot:redhat" in raw["listen", "monitor"].lines
    assert not any("redhat" in line for s in ours.values() for line in s.lines)


def test_guide2_check_options(colocated: Inventory) -> None:
    ours = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(colocated))}
    galera = ours["backend", "galera-vms"]
    assert galera.value("balance") is None  # the guide leaves galera to the stick table
    assert {"option httpchk", "stick-table type ip size 2", "stick on dst",
            "timeout server 90m"} <= set(galera.lines)
    first, *others = galera.servers
    assert first.endswith(" check inter 1s port 9200 on-marked-down shutdown-sessions")
    for server in others:
        assert server.endswith(" check inter 1s port 9200 on-marked-down shutdown-sessions backup")
    assert ours["frontend", "vip-galera"].value("timeout client") == "90m"
    assert "option clitcpka" in ours["frontend", "vip-rabbitmq"].lines
    assert "option srvtcpka" in ours["backend", "rabbitmq-vms"].lines
    assert ours["backend", "rabbitmq-vms"].value("timeout server") == "900m"
    assert ours["frontend", "vip-keystone-public"].value("timeout client") == "600s"
    for server in ours["backend", "keystone-public-vms"].servers:
        assert server.endswith("check inter 1s on-marked-down shutdown-sessions")
    horizon = ours["backend", "horizon-vms"]
    assert horizon.value("mode") == "http" and horizon.value("cookie") == COOKIE_LINE[7:]
    assert ours["frontend", "vip-horizon"].value("mode") == "http"
    defaults = ours["defaults", ""]
    assert defaults.lines == ["mode tcp", "maxconn 10000", "timeout connect 5s",
                              "timeout client 30s", "timeout server 30s", *REDISPATCH]


def test_http_checks_are_rendered_untuned_and_in_tcp_mode(colocated: Inventory) -> None:
    """The application check is not tuning: without catalog_options (which drops the guide's
    timeouts and cookies) and in a tcp-mode backend, haproxy still asks each API."""
    untuned = dataclasses.replace(colocated, haproxy=dataclasses.replace(
        colocated.haproxy, catalog_options=False))
    for inv in (colocated, untuned):
        ours = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(inv))}
        keystone = ours["backend", "keystone-public-vms"]
        assert inv.haproxy.mode == "tcp" and keystone.value("mode") is None
        assert keystone.lines[1:3] == ["option httpchk GET /v3", "http-check expect status 200"]
        assert ours["backend", "horizon-vms"].value("http-check") == "expect status 200-399"
        novnc = ours["backend", "nova-novncproxy-vms"]
        assert novnc.value("option") is None and novnc.value("http-check") is None
    grizzly = parse_haproxy(render_haproxy_cfg(dataclasses.replace(colocated,
                                                                   release="grizzly")))
    assert not any(line.startswith(("option httpchk GET", "http-check"))
                   for section in grizzly for line in section.lines)


def test_colocated_backends_use_each_api_bind(colocated: Inventory) -> None:
    binds = {str(c.api_bind) for c in colocated.controllers}
    for section in parse_haproxy(render_haproxy_cfg(colocated)):
        for server in section.servers:
            assert server.split()[2].rsplit(":", 1)[0] in binds


def test_stats_password_is_masked_unless_given(colocated: Inventory) -> None:
    masked = render_haproxy_cfg(colocated)
    assert "stats auth root:********\n" in masked
    given_pw = render_haproxy_cfg(colocated, {PASSWORD_ENV: "pw"})
    assert "stats auth root:pw\n" in given_pw
    other = render_haproxy_cfg(colocated, {"SOME_OTHER_VAR": "pw"})
    assert "stats auth root:********\n" in other


@pytest.mark.parametrize(("value", "word"), [
    ("plain-Pw.1", "plain-Pw.1"),
    ("a b", "'a b'"),
    ("a#b", "'a#b'"),
    ("it's", "'it'\\''s'"),
    ('"$HOME\\', "'\"$HOME\\'"),
    ("", "''"),
])
def test_haproxy_word_quotes_what_haproxy_would_interpret(value: str, word: str) -> None:
    assert haproxy_word(value) == word


@pytest.mark.parametrize("value", ["a\nstats admin if TRUE", "a\rb", "a\x00b", "tab\there"])
def test_haproxy_word_refuses_control_characters(value: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        haproxy_word(value)


def test_proxy_mode_is_kept_without_catalog_options(variant: Callable[..., Inventory]) -> None:
    """MySQL/AMQP must never be proxied in http mode, tuned or not."""
    inv = variant(HOSTS_EXAMPLE, ('"nova", "cinder"]', '"nova", "cinder", "galera", "rabbitmq"]'))
    assert inv.haproxy.mode == "http" and not inv.haproxy.catalog_options
    ours = {(s.kind, s.name): s for s in parse_haproxy(render_haproxy_cfg(inv))}
    for proxy in ("galera", "rabbitmq"):
        assert ours["frontend", f"{proxy}-vip"].value("mode") == "tcp"
        assert ours["backend", f"{proxy}-api"].value("mode") == "tcp"
    assert ours["backend", "galera-api"].value("option") is None  # untuned: no httpchk
    assert ours["frontend", "keystone-admin-vip"].value("mode") is None


def test_omit_proxies_and_service_order(variant: Callable[..., Inventory]) -> None:
    inv = variant(HOSTS_EXAMPLE, ('"cinder"]\n', '"cinder"]\nomit_proxies = ["nova-ec2"]\n'))
    names = [p.name for p in balanced_proxies(inv)]
    assert names == ["keystone-admin", "keystone-public", "quantum", "glance", "glance-registry",
                     "nova-compute", "nova-metadata", "cinder"]
    assert "nova-ec2" not in render_haproxy_cfg(inv)


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------

def test_golden_hosts_example(example: Inventory) -> None:
    assert_golden("hosts.example/haproxy.cfg", render_haproxy_cfg(example))


def test_golden_colocated(colocated: Inventory) -> None:
    assert_golden("colocated/haproxy.cfg", render_haproxy_cfg(colocated))


DEBIAN = ('platform = "el6"', 'platform = "debian"')


def test_golden_debian_hitless_reload(variant: Callable[..., Inventory]) -> None:
    """On Debian the admin socket hands the listeners to a reloading haproxy, and old
    processes get at most the longest client/server timeout to finish."""
    inv = variant(HOSTS_EXAMPLE, DEBIAN)
    text = render_haproxy_cfg(inv)
    assert_golden("debian/haproxy.cfg", text)
    (global_,) = [s for s in parse_haproxy(text) if s.kind == "global"]
    assert global_.lines == [
        "daemon", "stats socket /var/lib/haproxy/stats mode 600 level admin expose-fd listeners",
        "hard-stop-after 10s"]
    # only the global section, redispatching on every retry, the defaults' keep-alive
    # closing and each http backend's retries of a GET that met a closed connection differ
    # from EL's rendering
    el = render_haproxy_cfg(inv, platform="el6").splitlines()
    assert list(dict.fromkeys(line for line in text.splitlines() if line not in el)) == [
        "    stats socket /var/lib/haproxy/stats mode 600 level admin expose-fd listeners",
        "    hard-stop-after 10s", "    option redispatch 1", "    option idle-close-on-response",
        *(INDENT + line for line in L7_RETRIES)]
    for backend in (s for s in parse_haproxy(text) if s.kind == "backend"):
        assert backend.lines[1:3] == L7_RETRIES, backend.name


def test_only_http_backends_retry_a_request_that_met_a_closed_connection(
        colocated: Inventory) -> None:
    """retry-on is http-only (haproxy ignores it in tcp mode, and a SQL or AMQP session
    cannot be replayed): galera and rabbitmq get none; EL's haproxy 1.5 knows no retry-on."""
    debian = dataclasses.replace(colocated, platform="debian")
    sections = parse_haproxy(render_haproxy_cfg(debian))
    (defaults,) = [s for s in sections if s.kind == "defaults"]
    backends = {s.name: s for s in sections if s.kind == "backend"}
    modes = {name: b.value("mode") or defaults.value("mode") for name, b in backends.items()}
    assert modes["galera-vms"] == modes["rabbitmq-vms"] == "tcp"
    assert "http" in modes.values()
    for name, backend in backends.items():
        retries = [line for line in backend.lines if line in L7_RETRIES]
        assert retries == (L7_RETRIES if modes[name] == "http" else []), name
    assert "retry-on" not in render_haproxy_cfg(colocated, platform="el7")


@pytest.mark.parametrize(("platform", "hitless"), [
    ("debian", True), ("auto", True), ("el6", False), ("el7", False), ("el8", False),
    ("el9", False)])
def test_only_debian_gets_the_reload_options(example: Inventory, platform: str,
                                             hitless: bool) -> None:
    text = render_haproxy_cfg(example, platform=platform)
    assert ("expose-fd listeners" in text) is hitless
    assert ("hard-stop-after" in text) is hitless


@pytest.mark.parametrize(("client", "server", "bound"), [
    ("10s", "10s", "10s"), ("30s", "1m", "1m"), ("90m", "900000ms", "90m"),
    ("1h", "59m", "1h"), ("500ms", "2s", "2s")])
def test_hard_stop_after_is_the_longest_timeout(variant: Callable[..., Inventory], client: str,
                                                server: str, bound: str) -> None:
    inv = variant(HOSTS_EXAMPLE, DEBIAN, ('timeout_client = "10s"\ntimeout_server = "10s"',
                                          f'timeout_client = "{client}"\n'
                                          f'timeout_server = "{server}"'))
    assert hard_stop_after(inv) == bound
    assert f"    hard-stop-after {bound}\n" in render_haproxy_cfg(inv)


def test_no_stats_socket_means_no_socket_to_expose(variant: Callable[..., Inventory]) -> None:
    debian = variant(COLOCATED, ('platform = "el7"', 'platform = "debian"'))
    inv = dataclasses.replace(debian, haproxy=dataclasses.replace(debian.haproxy,
                                                                  stats_socket=None))
    text = render_haproxy_cfg(inv)
    assert "stats socket" not in text and "hard-stop-after 30s" in text


# ---------------------------------------------------------------------------------------------
# /etc/default/haproxy (Debian)
# ---------------------------------------------------------------------------------------------

def extraopts(defaults: str, action: str) -> str:
    """EXTRAOPTS as Debian's init script sees it after sourcing `defaults` for `action`."""
    script = f'set -- {action}; EXTRAOPTS=; {defaults}\nprintf "[%s]" "$EXTRAOPTS"'
    result = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                            timeout=10, check=True)
    return result.stdout


@pytest.mark.parametrize("systemd", [False, True])
def test_golden_haproxy_defaults(variant: Callable[..., Inventory], systemd: bool) -> None:
    text = render_haproxy_defaults(variant(HOSTS_EXAMPLE, DEBIAN), systemd)
    assert_golden(f"debian/default-haproxy-{'systemd' if systemd else 'sysv'}", text)
    assert subprocess.run(["/bin/sh", "-n"], input=text, text=True, check=False,
                          timeout=10).returncode == 0


def test_sysv_defaults_take_the_listeners_over_on_reload_only(
        variant: Callable[..., Inventory]) -> None:
    """-x on a start would find no old process and haproxy would refuse to start."""
    text = render_haproxy_defaults(variant(HOSTS_EXAMPLE, DEBIAN), systemd=False)
    for action in ("reload", "force-reload"):
        assert extraopts(text, action) == "[-x /var/lib/haproxy/stats]"
    for action in ("start", "restart", "stop", "status"):
        assert extraopts(text, action) == "[]"


def test_systemd_defaults_keep_the_units_options(variant: Callable[..., Inventory]) -> None:
    """EXTRAOPTS in the environment file would replace the unit's master socket (-S)."""
    text = render_haproxy_defaults(variant(HOSTS_EXAMPLE, DEBIAN), systemd=True)
    assert all(line.startswith("#") for line in text.splitlines())


def test_defaults_without_a_stats_socket_set_nothing(variant: Callable[..., Inventory]) -> None:
    debian = variant(HOSTS_EXAMPLE, DEBIAN)
    inv = dataclasses.replace(debian, haproxy=dataclasses.replace(debian.haproxy,
                                                                  stats_socket=None))
    text = render_haproxy_defaults(inv, systemd=False)
    assert extraopts(text, "reload") == "[]" and "binds them anew" in text


# ---------------------------------------------------------------------------------------------
# The real haproxy
# ---------------------------------------------------------------------------------------------

def haproxy_check(text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    assert HAPROXY is not None
    path = directory / "haproxy.cfg"
    path.write_text(text)
    return subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)


TUNED = ("catalog_options = false ", "catalog_options = true ")
ALL_GRIZZLY = ('"nova", "cinder"]', '"nova", "cinder", "galera", "rabbitmq", "swift", "novnc", '
               '"horizon", "heat", "ceilometer"]')
VARIANTS: dict[str, tuple[Path, tuple[tuple[str, str], ...], dict[str, str] | None]] = {
    "hosts.example": (HOSTS_EXAMPLE, (), None),
    "colocated-masked": (COLOCATED, (), None),
    "colocated-nasty-password": (COLOCATED, (), {PASSWORD_ENV: "a b#c'd\"e\\f$g"}),
    "example-tuned": (HOSTS_EXAMPLE, (TUNED,), None),
    "example-tuned-all-services-http": (HOSTS_EXAMPLE, (TUNED, ALL_GRIZZLY), None),
    "example-untuned-all-services": (HOSTS_EXAMPLE, (ALL_GRIZZLY,), None),
    "modern-dedicated-leastconn": (HOSTS_EXAMPLE, (
        ('release = "grizzly"', 'release = "modern"'), ('"quantum"', '"neutron"'),
        ('mode = "http"', 'mode = "http"\nbalance = "leastconn"'),
        ('"cinder"]\n', '"cinder"]\nomit_proxies = ["nova-metadata"]\n'),
    ), None),
    "debian": (HOSTS_EXAMPLE, (DEBIAN,), None),
    "colocated-debian": (COLOCATED, (('platform = "el7"', 'platform = "debian"'),), None),
    "colocated-untuned": (COLOCATED, (('stats_socket', 'catalog_options = false\nstats_socket'),),
                          None),
    "colocated-no-monitor": (COLOCATED, (
        ('[haproxy.monitor]\nport = 9300\nuri = "/status"\nstats_uri = "/admin"\n'
         'stats_user = "root"\nstats_password_env = "HADEPLOY_STATS_PASSWORD"\n'
         'stats_refresh = "5s"\n', ""),
    ), None),
}


@needs_haproxy
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_real_haproxy_accepts_rendered(name: str, variant: Callable[..., Inventory],
                                       tmp_path: Path) -> None:
    base, pairs, secrets = VARIANTS[name]
    inv = variant(base, *pairs)
    result = haproxy_check(render_haproxy_cfg(inv, secrets), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_haproxy
@pytest.mark.parametrize(("old", "new"), [
    ("bind 10.15.85.31:35357", "bind 10.15.85.31:353570"),      # port out of range
    ("default_backend cinder-api", "default_backend cinder-apix"),  # backend that does not exist
    ("check inter 10s", "check inter 25d"),                    # timer overflow
    ("balance roundrobin", "balance roundrobbin"),             # unknown algorithm
])
def test_real_haproxy_rejects_a_broken_config(example: Inventory, tmp_path: Path,
                                              old: str, new: str) -> None:
    """The check above could fail: the same haproxy refuses these one-word breakages."""
    result = haproxy_check(edit(render_haproxy_cfg(example), (old, new)), tmp_path)
    assert result.returncode != 0, f"haproxy accepted {new!r}"


# Random valid inventories: whatever validation lets through, haproxy must accept.

def _time(ms_max: int = 2_147_483_647) -> st.SearchStrategy[str]:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    return st.sampled_from(sorted(units)).flatmap(
        lambda u: st.integers(1, ms_max // units[u]).map(lambda n: f"{n}{u}")
    )


NODE_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
GRIZZLY = ["keystone", "quantum", "glance", "nova", "cinder", "swift", "novnc", "horizon",
           "heat", "ceilometer", "galera", "rabbitmq"]


@st.composite
def inventories(draw: st.DrawFn) -> str:
    release = draw(st.sampled_from(["grizzly", "modern"]))
    # modern: quantum is called neutron, ceilometer's API is gone, Placement is new
    names = GRIZZLY if release == "grizzly" else [
        {"quantum": "neutron", "ceilometer": "placement"}.get(n, n) for n in GRIZZLY]
    services = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                             unique=True))
    colocated = draw(st.booleans())
    count = draw(st.integers(2, 5))
    node_names = draw(st.lists(NODE_NAME, min_size=count * 2, max_size=count * 2,
                               unique_by=str.lower))
    monitor = draw(st.booleans())
    lines = [
        "[deployment]", 'name = "prop"', f'release = "{release}"',
        f'topology = "{"colocated" if colocated else "dedicated"}"',
        "[vip]", 'address = "10.9.0.250"', "prefix = 24", 'interface = "eth0"',
        f"virtual_router_id = {draw(st.integers(1, 255))}",
        "[keepalived]", "script_weight = 20",
        "[haproxy]",
        f'mode = "{draw(st.sampled_from(["http", "tcp"]))}"',
        f"maxconn = {draw(st.integers(1, 1_000_000))}",
        f'timeout_connect = "{draw(_time())}"', f'timeout_client = "{draw(_time())}"',
        f'timeout_server = "{draw(_time())}"', f'check_inter = "{draw(_time())}"',
        f'check_fastinter = "{draw(_time())}"', f'check_downinter = "{draw(_time())}"',
        f'balance = "{draw(st.sampled_from(["roundrobin", "leastconn", "source", "first"]))}"',
        f"catalog_options = {str(draw(st.booleans())).lower()}",
        'frontend_name = "{}"'.format(draw(st.sampled_from(["{proxy}-vip", "vip-{proxy}",
                                                             "fe_{proxy}"]))),
        'backend_name = "{}"'.format(draw(st.sampled_from(["{proxy}-api", "{proxy}-vms",
                                                            "be.{proxy}"]))),
    ]
    if monitor:
        lines += ["[haproxy.monitor]", f"port = {draw(st.sampled_from([9300, 1936, 65535]))}",
                  f'stats_refresh = "{draw(_time(86_400_000))}"']
    for i in range(count):
        if not colocated:
            lines += ["[[lb]]", f'name = "{node_names[count + i]}"',
                      f'address = "10.9.0.{100 + i}"', f"priority = {100 + i}"]
        lines += ["[[controller]]", f'name = "{node_names[i]}"', f'address = "10.9.0.{10 + i}"']
        if colocated:
            lines += [f'api_bind = "10.9.0.{10 + i}"', f"priority = {100 + i}"]
        if i == 0:
            lines.append("original = true")
    lines += ["[services]", "balance = [{}]".format(", ".join(f'"{s}"' for s in services))]
    return "\n".join(lines) + "\n"


PASSWORDS = encodable_text(min_codepoint=32, exclude="\x7f", max_size=20)


@needs_haproxy
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(text=inventories(), password=PASSWORDS)
def test_property_real_haproxy_accepts_any_valid_inventory(text: str, password: str,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "prop.toml"
    path.write_text(text)
    inv = load_inventory(path)  # the generator only makes valid inventories
    result = haproxy_check(render_haproxy_cfg(inv, {PASSWORD_ENV: password}), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# The stats password must reach haproxy unchanged, whatever its characters: run haproxy.

def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _get(url: str, user: str, password: str) -> int:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_haproxy
@pytest.mark.parametrize("password", ["plain", "a#b c", "it's \"quoted\" \\ $HOME", "pässwörd"])
def test_real_haproxy_reads_the_stats_password_unchanged(password: str, tmp_path: Path) -> None:
    port = _free_port("127.0.0.1")
    text = edit(
        COLOCATED.read_text(),
        ('address = "192.168.1.220"\nprefix = 24', 'address = "127.0.0.1"\nprefix = 8'),
        ("port = 9300", f"port = {port}"),
        ('stats_socket = "/var/lib/haproxy/stats"', f'stats_socket = "{tmp_path}/stats"'),
        ('balance = ["galera", "rabbitmq", "keystone", "glance", "cinder", "swift", "neutron", '
         '"novnc",\n           "nova", "horizon", "heat"]', 'balance = ["swift"]'),
        *((f"192.168.1.22{i}", f"127.0.0.{i + 1}") for i in (1, 2, 3) for _ in (0, 1)),
    )
    inventory = tmp_path / "local.toml"
    inventory.write_text(text)
    inv = load_inventory(inventory)
    cfg = render_haproxy_cfg(inv, {PASSWORD_ENV: password}).replace(
        "127.0.0.1:8080", f"127.0.0.1:{_free_port('127.0.0.1')}")
    (tmp_path / "haproxy.cfg").write_text(cfg)
    assert HAPROXY is not None
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/admin"
        for _ in range(200):  # wait until haproxy listens (or died)
            if proc.poll() is not None:
                pytest.fail(f"haproxy exited {proc.returncode}: {proc.stdout.read()!r}"
                            if proc.stdout else "haproxy exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        assert _get(url, "root", password) == 200
        assert _get(url, "root", password + "x") == 401
        if len(password) > 1:
            assert _get(url, "root", password[:-1]) == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
