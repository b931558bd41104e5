"""Keystone endpoints on the VIP (guide 1, "Create Service Endpoints"), from captured output.

Modern: the endpoint program's listing (the records of `openstack endpoint list -f json`) ->
one `set` of the program with every (id, url) on stdin, every non-public endpoint first and
identity's public one last (the program itself runs in test_endpoints_program.py).
Grizzly: the keystone v2 CLI's `endpoint-list` table -> `endpoint-create` then
`endpoint-delete`, as the guide does; the generated script also runs with /bin/sh against a
fake `keystone` that prints the guide's tables, to prove the new endpoint's id is read back
and an old endpoint is only deleted once its replacement exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hadeploy import framing
from hadeploy.catalog import Family
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.ops import UNDO, Command, HostContext, Probe
from hadeploy.ops.endpoints import (
    NEW_MARK,
    EndpointsOnVip,
    parse_keystone_table,
    undo_endpoints,
    url_port,
)
from hadeploy.ops.endpoints_program import ERROR, PROGRAM, SET
from hadeploy.platforms import profile_for
from hadeploy.runbook.controllers import build_controllers_runbook
from tests.unit.examples import COLOCATED, DATA, HOSTS_EXAMPLE

FIXTURES = DATA / "controllers"
MODERN_LIST = json.loads((FIXTURES / "openstack-endpoint-list.json").read_text())
GRIZZLY_LIST = (FIXTURES / "keystone-endpoint-list.txt").read_text()
AWK = "awk -F'|' '$2 ~ /^ *id *$/ {gsub(/ /, \"\", $3); print $3}'"
PASSWORD = "Adm1n-S3cret"  # a test value that must never show up


def endpoints_op(inv: Inventory) -> EndpointsOnVip:
    family: Family = "debian" if inv.platform == "debian" else "el"
    runbook = build_controllers_runbook(inv, {n.name: family for n in inv.nodes})
    (step,) = [s for s in runbook.steps if s.id == "ctl.endpoints"]
    (op,) = step.ops[inv.original.name]
    assert isinstance(op, EndpointsOnVip)
    return op


def ctx_of(inv: Inventory) -> HostContext:
    return HostContext(inv.original, profile_for("el7"), "run1", "ctl.endpoints", {},
                       frozenset(), True)


@pytest.fixture(scope="module")
def guide1() -> Inventory:
    return load_inventory(HOSTS_EXAMPLE)


@pytest.fixture(scope="module")
def guide2() -> Inventory:
    return load_inventory(COLOCATED)


def test_url_port() -> None:
    assert url_port("http://10.15.85.141:8774/v2/%(tenant_id)s") == 8774
    assert url_port("https://keystone.example:13000/v3") == 13000
    assert url_port("http://10.15.85.141/dashboard") == 80
    assert url_port("https://10.15.85.141") == 443
    assert url_port("10.15.85.141:9292") == 9292
    assert url_port("") is None


# -- modern: one python3 process lists and moves them -------------------------------------------

RC = "/root/keystonerc_admin"
IDENTITY_PUBLIC = "0c1f7d1e6b2a4c9e8f3d5a7b9c1e2f30"


def program(mode: str, rc: str = RC) -> str:
    """The shell that runs the endpoint program in `mode` with `rc` sourced."""
    return f". {shlex.quote(rc)} >/dev/null && python3 -c {shlex.quote(PROGRAM)} {mode}"


def wanted(command: Command) -> list[tuple[str, str]]:
    """The (id, url) pairs a `set` command hands the program on stdin, in order."""
    assert command.script == program("set") and command.stdin is not None
    return [(w["id"], w["url"]) for w in json.loads(command.stdin)]


def _modern_expected() -> list[tuple[str, str]]:
    by_id = {e["ID"]: e for e in MODERN_LIST}
    order = [  # non-public in list order, then public, identity's public last
        "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6", "2b3c4d5e6f7a48b9c0d1e2f3a4b5c6d7",
        "4d5e6f7a8b9c40d1e2f3a4b5c6d7e8f9", "5e6f7a8b9c0d41e2f3a4b5c6d7e8f9a0",
        "7a8b9c0d1e2f43a4b5c6d7e8f9a0b1c2", "8b9c0d1e2f3a44b5c6d7e8f9a0b1c2d3",
        "a0d1e2f3a4b5c46d7e8f9a0b1c2d3e4f", "b1e2f3a4b5c6d47e8f9a0b1c2d3e4f5a",
        "d3a4b5c6d7e8f49a0b1c2d3e4f5a6b7c", "e4b5c6d7e8f9a40b1c2d3e4f5a6b7c8d",
        "6f7a8b9c0d1e42f3a4b5c6d7e8f9a0b1", "9c0d1e2f3a4b45c6d7e8f9a0b1c2d3e4",
        "c2f3a4b5c6d7e48f9a0b1c2d3e4f5a6b",
        IDENTITY_PUBLIC,
    ]
    return [(ident, by_id[ident]["URL"].replace("192.168.1.221", "192.168.1.220"))
            for ident in order]


def test_modern_moves_every_original_url_in_one_process_identity_public_last(
        guide2: Inventory) -> None:
    op = endpoints_op(guide2)
    ctx = ctx_of(guide2)
    assert op.probe(ctx) == framing.beside(program("list"))  # beside its batch's shell probes
    seen = Probe(json.dumps(MODERN_LIST))
    assert not op.done(ctx, op.read(ctx, seen))
    (command,) = op.apply(ctx, op.read(ctx, seen))
    assert wanted(command) == _modern_expected()
    # already on the VIP, or on an unrelated host: untouched
    assert "3c4d5e6f7a8b49c0d1e2f3a4b5c6d7e8" not in str(command.stdin)
    assert "f5c6d7e8f9a0b41c2d3e4f5a6b7c8d9e" not in str(command.stdin)
    assert ("c2f3a4b5c6d7e48f9a0b1c2d3e4f5a6b",  # path kept
            "http://192.168.1.220:8776/v3/%(project_id)s") in wanted(command)
    assert command.shown() == ("PATCH 14 endpoint URL(s) -> 192.168.1.220 in one python3 "
                               "process (credentials from /root/keystonerc_admin)")
    # credentials come from the sourced file's environment alone
    assert "--os-password" not in command.script and "OS_PASSWORD=" not in command.script
    assert "192.168.1.221:5000 -> http://192.168.1.220:5000" in op.preview(ctx, op.read(ctx, seen))


def test_modern_outcome_done_and_undo_restore_in_reverse_order(guide2: Inventory) -> None:
    op = endpoints_op(guide2)
    ctx = ctx_of(guide2)
    seen = Probe(json.dumps(MODERN_LIST))
    record = op.intent(ctx, op.read(ctx, seen))
    assert record["kind"] == "endpoints" and record["release"] == "modern"
    assert record["rc"] == RC
    assert len(record["old"]) == 14
    assert {"id": "2b3c4d5e6f7a48b9c0d1e2f3a4b5c6d7", "interface": "admin",
            "url": "http://192.168.1.221:5000"} in record["old"]
    printed = "".join(f"{framing.tag(SET)} {ident} {url}\n" for ident, url in _modern_expected())
    assert op.outcome(ctx, [printed]) == {"moved": [i for i, _ in _modern_expected()]}
    assert op.outcome(ctx, [""]) == {}
    moved = [dict(e, URL=e["URL"].replace("192.168.1.221", "192.168.1.220"))
             for e in MODERN_LIST]
    assert op.done(ctx, op.read(ctx, Probe(json.dumps(moved))))
    assert UNDO["endpoints"] is undo_endpoints
    (undo,) = undo_endpoints(ctx, json.loads(json.dumps(record)))  # as read from the journal
    # the reverse order: identity's public URL goes back first
    assert wanted(undo) == [(e["id"], e["url"]) for e in reversed(record["old"])]
    assert wanted(undo)[0] == (IDENTITY_PUBLIC, "http://192.168.1.221:5000")
    assert undo.shown() == "restore 14 endpoint URL(s) from the journal in one python3 process"


def test_modern_undo_of_a_journal_written_before_the_batched_move() -> None:
    """A record exactly as the per-endpoint `openstack endpoint set` version journaled it
    (the record format did not change): the undo restores it in one process."""
    record = {"kind": "endpoints", "release": "modern", "rc": "/root/admin rc",
              "old": [{"id": "aa", "interface": "internal", "url": "http://10.0.0.5:9292"},
                      {"id": "bb", "interface": "public", "url": "http://10.0.0.5:5000/v3"}]}
    (undo,) = UNDO["endpoints"](ctx_of(load_inventory(COLOCATED)), record)
    assert undo.script == program("set", "/root/admin rc")
    assert json.loads(undo.stdin or b"") == [{"id": "bb", "url": "http://10.0.0.5:5000/v3"},
                                             {"id": "aa", "url": "http://10.0.0.5:9292"}]


def test_modern_endpoint_by_the_originals_name_moves_too(guide2: Inventory) -> None:
    op = endpoints_op(guide2)
    listing = [{"ID": "x1", "Service Type": "image", "Interface": "internal",
                "URL": "http://rhos6-node1:9292"}]
    (command,) = op.apply(ctx_of(guide2), op.read(ctx_of(guide2), Probe(json.dumps(listing))))
    assert wanted(command) == [("x1", "http://192.168.1.220:9292")]


def test_modern_endpoint_on_a_port_the_vip_does_not_serve_stays(guide1: Inventory) -> None:
    """guide 1 balances no swift: its endpoint on the original keeps the original's address."""
    op = replace(endpoints_op(guide1), release="modern")
    listing = [{"ID": "s1", "Service Type": "object-store", "Interface": "public",
                "URL": "http://10.15.85.141:8080/v1/AUTH_%(tenant_id)s"},
               {"ID": "g1", "Service Type": "image", "Interface": "public",
                "URL": "http://10.15.85.141:9292"}]
    ctx = ctx_of(guide1)
    (command,) = op.apply(ctx, op.read(ctx, Probe(json.dumps(listing))))
    assert wanted(command) == [("g1", "http://10.15.85.31:9292")]
    assert op.done(ctx, op.read(ctx, Probe(json.dumps(listing[:1]))))


def test_a_failed_listing_is_an_error_naming_the_credentials_file_and_why(
        guide2: Inventory) -> None:
    op = endpoints_op(guide2)
    ctx = ctx_of(guide2)
    with pytest.raises(ValueError, match=r"cannot list endpoints with /root/keystonerc_admin: "
                                         r"exit 1$"):
        op.done(ctx, op.read(ctx, Probe("", exited=1)))
    said = f"{framing.tag(ERROR)} GET http://192.168.1.221:5000/v3/endpoints failed: 401\n"
    with pytest.raises(ValueError, match=re.escape(
            "keystonerc_admin: GET http://192.168.1.221:5000/v3/endpoints failed: 401")):
        op.done(ctx, op.read(ctx, Probe(said, exited=1)))


# -- grizzly: keystone endpoint-create / endpoint-delete (guide 1's commands) ---------------------

# The guide's endpoints, by old id: (service id, publicurl, internalurl, adminurl) on the VIP.
GUIDE_CREATES = [
    ("0b52480b89964721bc2fc59cc41ad16c", "79b92be20bec4a469725e8c5e2bb46a4",
     "http://10.15.85.31:8776/v1/%(tenant_id)s", "http://10.15.85.31:8776/v1/%(tenant_id)s",
     "http://10.15.85.31:8776/v1/%(tenant_id)s"),
    ("b51a4af8149b479b8856db85c6ea41ba", "31ee714b590d41fc9833618abc349642",
     "http://10.15.85.31:8773/services/Cloud", "http://10.15.85.31:8773/services/Cloud",
     "http://10.15.85.31:8773/services/Admin"),
    ("ca8676494d73487397f9223432cb8d07", "b2721815afab4c4784673029609cb84d",
     "http://10.15.85.31:5000/v2.0", "http://10.15.85.31:5000/v2.0",
     "http://10.15.85.31:35357/v2.0"),
    ("d3bc590da84042cb8f4df4296550d689", "976a816bcb29441b882d6cc01faf29ec",
     "http://10.15.85.31:9696/", "http://10.15.85.31:9696/", "http://10.15.85.31:9696/"),
    ("f66323395c394322b2e20fee63777927", "a959fca8b65745d485131cff9d41480f",
     "http://10.15.85.31:9292", "http://10.15.85.31:9292", "http://10.15.85.31:9292"),
    ("f9cbe1df0eb244fbb76ac4dc4b06feb2", "aa5220a1065b4992baf5cdfe309033e6",
     "http://10.15.85.31:8774/v2/%(tenant_id)s", "http://10.15.85.31:8774/v2/%(tenant_id)s",
     "http://10.15.85.31:8774/v2/%(tenant_id)s"),
]


def create_argv(service: str, public: str, internal: str, admin: str) -> list[str]:
    return ["endpoint-create", "--region", "RegionOne", "--service-id", service,
            "--publicurl", public, "--internalurl", internal, "--adminurl", admin]


def test_parse_the_keystone_v2_table() -> None:
    rows = parse_keystone_table(GRIZZLY_LIST)
    assert len(rows) == 8
    assert rows[3] == {"id": "ca8676494d73487397f9223432cb8d07", "region": "RegionOne",
                       "publicurl": "http://10.15.85.141:5000/v2.0",
                       "internalurl": "http://10.15.85.141:5000/v2.0",
                       "adminurl": "http://10.15.85.141:35357/v2.0",
                       "service_id": "b2721815afab4c4784673029609cb84d"}
    assert parse_keystone_table("") == []


def test_grizzly_creates_then_deletes_each_guide_endpoint(guide1: Inventory) -> None:
    op = endpoints_op(guide1)
    ctx = ctx_of(guide1)
    assert op.probe(ctx) == framing.beside(
        ". /root/keystonerc_admin >/dev/null && keystone endpoint-list")
    seen = Probe(GRIZZLY_LIST)
    assert not op.done(ctx, op.read(ctx, seen))
    (command,) = op.apply(ctx, op.read(ctx, seen))
    expected = ["set -e", ". /root/keystonerc_admin >/dev/null"]
    for old, service, public, internal, admin in GUIDE_CREATES:
        create = shlex.join(["keystone", *create_argv(service, public, internal, admin)])
        expected += [
            f"new=$({create} | {AWK})",
            f"[ -n \"$new\" ] || {{ echo 'keystone endpoint-create printed no id for the "
            f"replacement of endpoint {old}; {old} was kept' >&2; exit 1; }}",
            f"echo {NEW_MARK} {old} \"$new\"",
            f"keystone endpoint-delete {old} >/dev/null",
        ]
    assert command.script.split("\n") == expected
    # swift (8080, not balanced in guide 1) keeps its endpoints
    assert "7a6df59033e54590a4e4fc8ec8225c56" not in command.script
    assert "OS_PASSWORD" not in command.script
    assert command.shown() == ("keystone endpoint-create/-delete for 6 endpoint(s) -> "
                               "10.15.85.31 (credentials from /root/keystonerc_admin)")
    preview = op.preview(ctx, op.read(ctx, seen))
    assert ("  ca8676494d73487397f9223432cb8d07 adminurl: http://10.15.85.141:35357/v2.0 -> "
            "http://10.15.85.31:35357/v2.0\n") in preview


def _moved_table() -> str:
    """The endpoint list after the move: the six guide endpoints recreated on the VIP."""
    keep = [line for line in GRIZZLY_LIST.splitlines()
            if not line.startswith("| ") or "8080" in line or " id " in line]
    rows = [f"| new{i:029d} | RegionOne | {pub} | {internal} | {admin} | {service} |"
            for i, (_, service, pub, internal, admin) in enumerate(GUIDE_CREATES)]
    return "\n".join(keep[:3] + rows + keep[3:]) + "\n"


def test_grizzly_outcome_done_and_undo(guide1: Inventory) -> None:
    op = endpoints_op(guide1)
    ctx = ctx_of(guide1)
    seen = Probe(GRIZZLY_LIST)
    record = op.intent(ctx, op.read(ctx, seen))
    assert [e["id"] for e in record["old"]] == [c[0] for c in GUIDE_CREATES]
    assert record["old"][2] == {
        "id": "ca8676494d73487397f9223432cb8d07", "region": "RegionOne",
        "service_id": "b2721815afab4c4784673029609cb84d",
        "publicurl": "http://10.15.85.141:5000/v2.0",
        "internalurl": "http://10.15.85.141:5000/v2.0",
        "adminurl": "http://10.15.85.141:35357/v2.0"}
    output = "".join(f"{NEW_MARK} {old} new{i:029d}\n"
                     for i, (old, *_) in enumerate(GUIDE_CREATES))
    created = op.outcome(ctx, [output])
    assert created == {"created": {old: f"new{i:029d}"
                                   for i, (old, *_) in enumerate(GUIDE_CREATES)}}
    assert op.outcome(ctx, ["Endpoint has been deleted.\n"]) == {}
    # after the move: done, and a re-run changes nothing
    assert op.done(ctx, op.read(ctx, Probe(_moved_table())))
    # undo: recreate each old endpoint, then delete its replacement
    (undo,) = undo_endpoints(ctx, {**record, **created})
    lines = undo.script.split("\n")
    assert lines[:2] == ["set -e", ". /root/keystonerc_admin >/dev/null"]
    assert lines[2:4] == [
        "keystone endpoint-create --region RegionOne --service-id "
        "79b92be20bec4a469725e8c5e2bb46a4 --publicurl "
        "'http://10.15.85.141:8776/v1/%(tenant_id)s' --internalurl "
        "'http://10.15.85.141:8776/v1/%(tenant_id)s' --adminurl "
        "'http://10.15.85.141:8776/v1/%(tenant_id)s' >/dev/null",
        f"keystone endpoint-delete new{0:029d} >/dev/null",
    ]
    assert len(lines) == 2 + 2 * len(GUIDE_CREATES)
    # without a record of what was created, nothing is guessed
    (nothing,) = undo_endpoints(ctx, record)
    assert nothing.script == "set -e\n. /root/keystonerc_admin >/dev/null"


def test_grizzly_reuses_an_endpoint_already_on_the_vip(guide1: Inventory) -> None:
    """An interrupted earlier attempt created glance's new endpoint but did not delete the
    old one: the re-run deletes the old one without creating a duplicate."""
    op = endpoints_op(guide1)
    ctx = ctx_of(guide1)
    lines = GRIZZLY_LIST.splitlines()
    extra = ("| 16e5704be5cf48ff8fca4f608f72dd00 | RegionOne | http://10.15.85.31:9292 | "
             "http://10.15.85.31:9292 | http://10.15.85.31:9292 | "
             "a959fca8b65745d485131cff9d41480f |")
    table = "\n".join([*lines[:-1], extra, lines[-1]]) + "\n"
    (command,) = op.apply(ctx, op.read(ctx, Probe(table)))
    assert command.script.count("new=$(keystone endpoint-create") == 5
    assert "\nnew=16e5704be5cf48ff8fca4f608f72dd00\n" in command.script
    assert ("echo @@hadeploy-endpoint f66323395c394322b2e20fee63777927 \"$new\"\n"
            "keystone endpoint-delete f66323395c394322b2e20fee63777927") in command.script


# -- the grizzly script with /bin/sh against a fake keystone CLI ----------------------------------

FAKE_KEYSTONE = r"""#!/bin/sh
# A stand-in for python-keystoneclient's CLI: logs its argv (one word per line), prints tables.
log={log}
echo "--- OS_AUTH_URL=$OS_AUTH_URL OS_PASSWORD=${{OS_PASSWORD:+set}}" >> "$log"
printf '%s\n' "$@" >> "$log"
case "$1" in
endpoint-create)
  for arg in "$@"; do
    if [ -e {fail} ] && [ "$arg" = "$(cat {fail})" ]; then
      echo "Unable to communicate with identity service: 503" >&2; exit 1
    fi
  done
  n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}
  id=$(printf 'c58e5c86ceba47429c4014%010d' $n)
  cat <<EOF
+-------------+----------------------------------+
|   Property  |              Value               |
+-------------+----------------------------------+
|   adminurl  |  http://10.15.85.31:35357/v2.0   |
|      id     | $id |
| internalurl |   http://10.15.85.31:5000/v2.0   |
|  publicurl  |   http://10.15.85.31:5000/v2.0   |
|    region   |            RegionOne             |
|  service_id | b2721815afab4c4784673029609cb84d |
+-------------+----------------------------------+
EOF
  ;;
endpoint-delete) echo "Endpoint has been deleted." ;;
*) echo "fake keystone: unexpected $1" >&2; exit 2 ;;
esac
"""


class FakeKeystone:
    """A tmp dir with `keystone` on PATH and an admin rc file with a space in its path."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "argv.log"
        self.fail = root / "fail-service"
        counter = root / "counter"
        script = self.bin / "keystone"
        script.write_text(FAKE_KEYSTONE.format(log=shlex.quote(str(self.log)),
                                               fail=shlex.quote(str(self.fail)),
                                               counter=shlex.quote(str(counter))))
        script.chmod(0o755)
        self.rc = root / "admin creds" / "keystonerc_admin"
        self.rc.parent.mkdir()
        self.rc.write_text(f"export OS_USERNAME=admin\nexport OS_TENANT_NAME=admin\n"
                           f"export OS_PASSWORD={PASSWORD}\n"
                           "export OS_AUTH_URL=http://10.15.85.141:35357/v2.0/\n"
                           "export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '\n")

    def run(self, command: Command) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        return subprocess.run(["/bin/sh", "-c", command.script], capture_output=True,
                              text=True, env=env, timeout=30, check=False)

    def calls(self) -> list[list[str]]:
        """Each call's argv; checks every call had the rc file's credentials."""
        out: list[list[str]] = []
        for line in self.log.read_text().splitlines():
            if line.startswith("--- "):
                assert line == "--- OS_AUTH_URL=http://10.15.85.141:35357/v2.0/ OS_PASSWORD=set"
                out.append([])
            else:
                out[-1].append(line)
        return out


def _grizzly_op(inv: Inventory, fake: FakeKeystone) -> EndpointsOnVip:
    return replace(endpoints_op(inv), rc=str(fake.rc))


def test_grizzly_script_with_real_sh_reads_each_new_id(guide1: Inventory,
                                                       tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    op = _grizzly_op(guide1, fake)
    ctx = ctx_of(guide1)
    (command,) = op.apply(ctx, op.read(ctx, Probe(GRIZZLY_LIST)))
    assert shlex.quote(str(fake.rc)) in command.script
    result = fake.run(command)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr + command.script
    expected_calls: list[list[str]] = []
    for old, service, public, internal, admin in GUIDE_CREATES:
        expected_calls += [create_argv(service, public, internal, admin),
                           ["endpoint-delete", old]]
    assert fake.calls() == expected_calls
    outcome = op.outcome(ctx, [result.stdout])
    assert outcome == {"created": {old: f"c58e5c86ceba47429c4014{i + 1:010d}"
                                   for i, (old, *_) in enumerate(GUIDE_CREATES)}}
    # and the undo, from the journal record, with the same fake
    fake.log.unlink()
    record: dict[str, Any] = {**op.intent(ctx, op.read(ctx, Probe(GRIZZLY_LIST))), **outcome}
    (undo,) = undo_endpoints(ctx, record)
    result = fake.run(undo)
    assert result.returncode == 0, result.stderr
    calls = fake.calls()
    assert calls[0] == create_argv("79b92be20bec4a469725e8c5e2bb46a4",
                                   *["http://10.15.85.141:8776/v1/%(tenant_id)s"] * 3)
    assert calls[1] == ["endpoint-delete", "c58e5c86ceba47429c40140000000001"]
    assert len(calls) == 2 * len(GUIDE_CREATES)


def test_grizzly_script_keeps_the_old_endpoint_when_create_fails(guide1: Inventory,
                                                                  tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    fake.fail.write_text("976a816bcb29441b882d6cc01faf29ec")  # quantum's service id
    op = _grizzly_op(guide1, fake)
    (command,) = op.apply(ctx_of(guide1), op.read(ctx_of(guide1), Probe(GRIZZLY_LIST)))
    result = fake.run(command)
    assert result.returncode != 0
    assert ("printed no id for the replacement of endpoint d3bc590da84042cb8f4df4296550d689; "
            "d3bc590da84042cb8f4df4296550d689 was kept") in result.stderr
    calls = fake.calls()
    deleted = [c[1] for c in calls if c[0] == "endpoint-delete"]
    # cinder, ec2 and keystone moved before the failure; quantum's old endpoint stays
    assert deleted == [c[0] for c in GUIDE_CREATES[:3]]
    assert calls[-1][0] == "endpoint-create" and "976a816bcb29441b882d6cc01faf29ec" in calls[-1]
    # what did move is on stdout for the journal
    assert set(op.outcome(ctx_of(guide1), [result.stdout])["created"]) == {
        c[0] for c in GUIDE_CREATES[:3]}
