"""TLS on the public VIP, second VIP: what haproxy.cfg, keepalived.conf, the `lb` and
`controllers` runbooks make of it, checked by the real haproxy, and the key kept out of every
plan and diff."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hadeploy.app import Deployment, _NoTransport, read_secrets
from hadeploy.errors import InventoryError
from hadeploy.facts.network import Listening
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.inventory.tls import BUNDLE_SECRET, TLS_BUNDLE, load_tls_bundle
from hadeploy.ops import HostContext, Probe
from hadeploy.ops.files import FileContent, FileEdit
from hadeploy.ops.tls import SecretFile
from hadeploy.platforms import profile_for
from hadeploy.render import render_haproxy_cfg, render_keepalived_conf
from hadeploy.render.secrets import MASK
from hadeploy.runbook import build_lb_runbook
from hadeploy.runbook.controllers import build_controllers_runbook
from hadeploy.runbook.lb import haproxy_listening
from hadeploy.transport.base import Transport
from tests.unit.examples import COLOCATED, DATA, edit
from tests.unit.test_endpoints import MODERN_LIST, ctx_of, endpoints_op, wanted
from tests.unit.test_tls_inventory import corpus_case

HAPROXY = shutil.which("haproxy")
CORPUS = DATA / "bad_tls"
MODERN = (('release = "grizzly"', 'release = "modern"'), ('platform = "el6"',
                                                          'platform = "debian"'),
          ('"quantum"', '"neutron"'))


@pytest.fixture
def tls_inv(tmp_path: Path) -> Inventory:
    """hosts.example.toml made modern Debian, public VIP 10.15.85.40 with the corpus's good
    certificate."""
    inv = corpus_case(tmp_path, "good")
    path = Path(inv.path)
    path.write_text(edit(path.read_text(), *MODERN))
    return load_inventory(path)


def _ctx(inv: Inventory, node_name: str, secrets: dict[str, str]) -> HostContext:
    return HostContext(inv.node(node_name), profile_for("debian"), "run1", "lb.tls", secrets,
                       frozenset(), True)


def test_public_frontends_terminate_tls_and_set_the_forwarded_proto(tls_inv: Inventory) -> None:
    text = render_haproxy_cfg(tls_inv)
    front = text.split("frontend keystone-public-vip\n")[1].split("\n\n")[0]
    assert front.splitlines() == [
        "    bind 10.15.85.31:5000",
        f"    bind 10.15.85.40:5000 ssl crt {TLS_BUNDLE}",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        "    default_backend keystone-public-api",
    ]
    assert text.count("ssl crt") == len([ln for ln in text.splitlines()
                                         if ln.startswith("frontend ")])


def _haproxy_check(inv: Inventory, tmp_path: Path
                   ) -> tuple[subprocess.CompletedProcess[str], tuple[Path, Path]]:
    """The real `haproxy -c` of `inv`'s haproxy.cfg with its certificate bundle written to
    `tmp_path` (the result, and the bundle's and the config's paths)."""
    bundle = load_tls_bundle(inv)
    assert bundle is not None and HAPROXY is not None
    pem = tmp_path / "bundle.pem"
    pem.write_bytes(bundle.pem)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(inv).replace(TLS_BUNDLE, str(pem)))
    run = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                         check=False, timeout=60)
    return run, (pem, cfg)


def _balanced_sockets(inv: Inventory) -> list[tuple[str, int]]:
    """(address, port) of every bind line of the rendered haproxy.cfg's frontends."""
    binds = [line.split()[1] for line in render_haproxy_cfg(inv).splitlines()
             if line.strip().startswith("bind ") and ":" in line.split()[1]]
    return [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in binds]


def _dashboard(tmp_path: Path, redirect: bool) -> Inventory:
    """tls_inv with Horizon balanced too, and tls.redirect_http as given."""
    inv = corpus_case(tmp_path, "good")
    path = Path(inv.path)
    text = edit(path.read_text(), *MODERN, ('"cinder"]', '"cinder", "horizon"]'))
    if redirect:
        text = text.replace("\n[tls]\n", "\n[tls]\nredirect_http = true\n", 1)
    path.write_text(text)
    return load_inventory(path)


@pytest.mark.parametrize("redirect", [False, True])
def test_the_dashboard_is_https_on_443_and_plain_http_redirects_if_asked(
        tmp_path: Path, redirect: bool) -> None:
    inv = _dashboard(tmp_path, redirect)
    text = render_haproxy_cfg(inv)
    front = text.split("frontend horizon-vip\n")[1].split("\n\n")[0].splitlines()
    redirected = ["    bind 10.15.85.40:80",
                  "    http-request redirect scheme https code 301 if !{ ssl_fc } "
                  "{ dst 10.15.85.40 }"] if redirect else []
    assert front[:2 + len(redirected)] == [
        "    bind 10.15.85.31:80",  # the internal VIP stays plain HTTP
        f"    bind 10.15.85.40:443 ssl crt {TLS_BUNDLE}", *redirected]
    # the lb phase's verify wants haproxy on exactly those ports of the public VIP
    listening = haproxy_listening(inv)
    ctx = _ctx(inv, "mesa-virt-01", {})
    bound = _balanced_sockets(inv)
    sockets = tuple(Listening(f"{a}:{p}", a, p) for a, p in bound)
    assert listening.judge(ctx, sockets) is None
    public = {(a, p) for a, p in bound if a == "10.15.85.40" and p in (80, 443)}
    assert public == ({("10.15.85.40", 443), ("10.15.85.40", 80)} if redirect
                      else {("10.15.85.40", 443)})
    for gone in public:
        problem = listening.judge(ctx, tuple(s for s in sockets
                                             if (s.address, s.port) != gone))
        assert problem == f"haproxy does not listen on 10.15.85.40 port(s) {gone[1]}"
    if HAPROXY is not None:  # and the real haproxy takes the frontend
        run, _ = _haproxy_check(inv, tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr


def test_databases_and_queues_stay_on_the_internal_vip(tmp_path: Path) -> None:
    inv = corpus_case(tmp_path, "good")
    path = Path(inv.path)
    path.write_text(edit(path.read_text(), ('"cinder"]', '"cinder", "galera", "rabbitmq"]')))
    text = render_haproxy_cfg(load_inventory(path))
    for name, port in (("galera", 3306), ("rabbitmq", 5672)):
        front = text.split(f"frontend {name}-vip\n")[1].split("\n\n")[0]
        assert f"bind 10.15.85.31:{port}" in front and "10.15.85.40" not in front


def test_public_vip_without_tls_is_a_plain_second_bind(tmp_path: Path) -> None:
    inv = corpus_case(tmp_path, "good")
    path = Path(inv.path)
    path.write_text(edit(path.read_text(), ("\n[tls]\n", "\n[tls-off]\n")).split("[tls-off]")[0])
    text = render_haproxy_cfg(load_inventory(path))
    assert "bind 10.15.85.40:9292\n" in text and "ssl" not in text


def test_keepalived_holds_both_vips(tmp_path: Path) -> None:
    inv = corpus_case(tmp_path, "good")
    path = Path(inv.path)
    path.write_text(edit(path.read_text(), ('public_address = "10.15.85.40"\n',
                                            'public_address = "203.0.113.10"\n'
                                            'public_interface = "eth1"\npublic_prefix = 28\n')))
    # the corpus certificate names cloud.example.com, not this address
    text = path.read_text().replace("[tls]\n", '[tls]\nname = "cloud.example.com"\n')
    path.write_text(text)
    conf = render_keepalived_conf(load_inventory(path), load_inventory(path).balancers[0])
    block = conf.split("virtual_ipaddress {\n")[1].split("}")[0]
    assert block.split() == ["10.15.85.31/24", "dev", "eth0", "203.0.113.10/28", "dev", "eth1"]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_real_haproxy_loads_the_certificate(tls_inv: Inventory, tmp_path: Path) -> None:
    run, (pem, cfg) = _haproxy_check(tls_inv, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    bundle = load_tls_bundle(tls_inv)
    assert bundle is not None and HAPROXY is not None
    pem.write_bytes(bundle.pem.split(b"-----BEGIN PRIVATE KEY")[0])  # no key: refused
    assert subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True,
                          check=False, timeout=60).returncode != 0


def test_lb_runbook_pushes_the_bundle_root_only_and_reloads_for_it(tls_inv: Inventory) -> None:
    runbook = build_lb_runbook(tls_inv)
    ids = [s.id for s in runbook.steps]
    assert ids.index("lb.tls") == ids.index("lb.haproxy-cfg") - 1  # haproxy -c sees it
    (op,) = next(s for s in runbook.steps if s.id == "lb.tls").ops["mesa-lb-01"]
    assert isinstance(op, SecretFile) and op.path == TLS_BUNDLE
    assert (op.owner, op.group, op.mode) == ("root", "root", "0600")
    services = next(s for s in runbook.steps if s.id == "lb.services").ops["mesa-lb-01"]
    assert "lb.tls" in services[0].reload_after  # type: ignore[attr-defined]
    preflight = [o.op_id for o in next(s for s in runbook.steps if s.id == "lb.preflight")
                 .ops["mesa-lb-01"]]
    assert "vip-free-public" in preflight and "vip-free" in preflight
    assert "lb.tls" not in [s.id for s in build_lb_runbook(
        replace(tls_inv, tls=None)).steps]


def test_the_key_is_never_probed_back_diffed_or_shown(tls_inv: Inventory) -> None:
    secrets = read_secrets(tls_inv, required=True)
    bundle = secrets[BUNDLE_SECRET]
    key_line = bundle.split("PRIVATE KEY-----\n")[1].splitlines()[0]
    op = next(s for s in build_lb_runbook(tls_inv).steps if s.id == "lb.tls").ops["mesa-lb-01"][0]
    ctx = _ctx(tls_inv, "mesa-lb-01", secrets)
    assert "base64" not in str(op.fact(ctx).command)  # only a checksum is read back
    state = op.read(ctx, Probe(""))
    preview = op.preview(ctx, state)
    assert "CN=10.15.85.40" in preview and "private key not shown" in preview
    assert key_line not in preview
    (command,) = op.apply(ctx, state)
    assert command.stdin == bundle.encode() and key_line not in command.shown()
    assert key_line not in command.script
    plain = FileContent("x", TLS_BUNDLE, lambda c: bundle.encode())
    assert plain.fact(ctx).command != op.fact(ctx).command  # a plain file would read it


def test_redactor_masks_the_key_line_by_line(tls_inv: Inventory, tmp_path: Path) -> None:
    deployment = Deployment(tls_inv.path)
    secrets = read_secrets(tls_inv, required=True)
    deployment.engine(_NoTransport(), secrets)
    key_line = secrets[BUNDLE_SECRET].split("PRIVATE KEY-----\n")[1].splitlines()[1]
    assert deployment.redactor(f"oops: {key_line}") == f"oops: {MASK}"


@pytest.mark.parametrize("case", ["wrong_key", "expired", "wrong_name", "not_pem",
                                  "key_world_readable"])
def test_bad_certificate_refused_before_any_connection(case: str, tmp_path: Path) -> None:
    inv = corpus_case(tmp_path, case)

    def no_transport(inv: Inventory) -> Transport:
        raise AssertionError("connected despite a bad certificate")

    deployment = Deployment(inv.path, transport_factory=no_transport)
    for action in (lambda: deployment.plan("lb", offline=False),
                   lambda: deployment.deploy("lb")):
        with pytest.raises(InventoryError) as caught:
            action()
        assert "tls." in str(caught.value) and "nothing was run" in str(caught.value)
    assert not list(Path(inv.path).parent.glob(".hadeploy/runs/*.json"))  # no run began


def test_proxy_header_parsing_is_switched_on_with_tls(tls_inv: Inventory) -> None:
    families = {n.name: "debian" for n in tls_inv.nodes}
    runbook = build_controllers_runbook(tls_inv, families)  # type: ignore[arg-type]
    step = next(s for s in runbook.steps if s.id == "ctl.glance.vip-keys")
    (edit_op,) = [o for o in step.ops[tls_inv.original.name]
                  if isinstance(o, FileEdit) and o.path == "/etc/glance/glance-api.conf"]
    ctx = _ctx(tls_inv, tls_inv.original.name, {})
    assert "[oslo_middleware]\nenable_proxy_headers_parsing = true" in edit_op.edit(
        ctx, "[DEFAULT]\n")
    plain = build_controllers_runbook(replace(tls_inv, tls=None), families)  # type: ignore[arg-type]
    assert "enable_proxy_headers_parsing" not in " ".join(
        o.title() for s in plain.steps for ops in s.ops.values() for o in ops)


def test_public_endpoints_go_https_on_the_public_vip_internal_stay() -> None:
    inv = load_inventory(COLOCATED)
    op = replace(endpoints_op(inv), public_host="192.168.1.230", public_tls=True,
                 vips=("192.168.1.230",))
    ctx = ctx_of(inv)
    seen = op.read(ctx, Probe(json.dumps(MODERN_LIST)))
    (command,) = op.apply(ctx, seen)
    moved = dict(wanted(command))
    by_id = {e["ID"]: e for e in MODERN_LIST}
    for ident, url in moved.items():
        if by_id[ident]["Interface"] == "public":
            assert url.startswith("https://192.168.1.230:"), url
        else:
            assert url.startswith("http://192.168.1.220:"), url
    # a catalog a plain run already moved: the public URLs move again, to https
    after = [{**e, "URL": moved.get(e["ID"], e["URL"])} for e in MODERN_LIST]
    plain_moved = [{**e, "URL": e["URL"].replace("https://192.168.1.230", "http://192.168.1.220")}
                   for e in after]
    again = op.read(ctx, Probe(json.dumps(plain_moved)))
    (command,) = op.apply(ctx, again)
    assert all(url.startswith("https://192.168.1.230:") for _, url in wanted(command))
    assert op.done(ctx, op.read(ctx, Probe(json.dumps(after))))
