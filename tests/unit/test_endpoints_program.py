"""The endpoint program itself, run by python3 under /bin/sh as on the original controller.

keystoneauth1 is not a dependency of hadeploy, so a stand-in package on PYTHONPATH plays it:
its `Session` answers the Keystone v3 calls the program makes from a JSON file (the catalog)
and logs every request, and `v3.Password` records the credentials it was given. What runs
for real is the shell the operation builds (the rc file sourced by `.`), the program's text
and, in the last test, the engine: a move that fails half-way, and the undo the engine runs
from the journal at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hadeploy import framing
from hadeploy.engine import Engine
from hadeploy.errors import StepFailed
from hadeploy.events import Event
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.journal import Journal, now
from hadeploy.ops import Command, EndpointsOnVip, Probe
from hadeploy.ops.endpoints import undo_endpoints
from hadeploy.ops.endpoints_program import ERROR, SET, list_command
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeTransport
from tests.unit.examples import COLOCATED
from tests.unit.test_endpoints import (
    IDENTITY_PUBLIC,
    MODERN_LIST,
    _modern_expected,
    ctx_of,
    endpoints_op,
)

PASSWORD = "Adm1n-S3cret"  # a test value that must never show up
AUTH_URL = "http://192.168.1.221:5000/v3"
API = "http://192.168.1.221:5000/v3"

# keystoneauth1 as far as the program uses it; the state file is the catalog plus a log.
STAND_IN = {
    "keystoneauth1/__init__.py": "",
    "keystoneauth1/identity/__init__.py": "",
    "keystoneauth1/identity/v3.py": """
class Password:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
""",
    "keystoneauth1/session.py": """
import json
import os

PATH = os.environ["FAKE_KEYSTONE"]


class ServiceUnavailable(Exception):
    pass


class Response:
    def __init__(self, body):
        self.body = body

    def json(self):
        return self.body


def load():
    with open(PATH) as f:
        return json.load(f)


def save(state):
    with open(PATH, "w") as f:
        json.dump(state, f)


class Session:
    def __init__(self, auth, verify=True, cert=None):
        state = load()
        state["sessions"].append({"auth": auth.kwargs, "verify": verify, "cert": cert})
        save(state)

    def request(self, url, method, json=None, **kwargs):
        state = load()
        state["requests"].append([method, url, json])
        save(state)
        if method == "GET" and url.endswith("/endpoints"):
            return Response({"endpoints": state["endpoints"]})
        if method == "GET" and url.endswith("/services"):
            return Response({"services": state["services"]})
        if method == "PATCH":
            ident = url.rsplit("/", 1)[1]
            if ident == state["fail"]:
                raise ServiceUnavailable("Service Unavailable (HTTP 503)")
            (endpoint,) = [e for e in state["endpoints"] if e["id"] == ident]
            endpoint["url"] = json["endpoint"]["url"]
            save(state)
            return Response({"endpoint": endpoint})
        raise AssertionError("unexpected request %s %s" % (method, url))

    def patch(self, url, **kwargs):
        return self.request(url, "PATCH", **kwargs)
""",
}


def v3_catalog(listing: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keystone v3's endpoints and services behind an `openstack endpoint list -f json`."""
    services = {e["Service Name"]: {"id": f"svc-{e['Service Name']}", "name": e["Service Name"],
                                    "type": e["Service Type"]} for e in listing}
    endpoints = [{"id": e["ID"], "interface": e["Interface"], "region_id": e["Region"],
                  "region": e["Region"], "service_id": services[e["Service Name"]]["id"],
                  "url": e["URL"], "enabled": e["Enabled"]} for e in listing]
    return endpoints, list(services.values())


class FakeKeystone:
    """A tmp dir with the stand-in keystoneauth1, a `python3` on PATH, an admin rc file with a
    space in its path, and the catalog's state file."""

    def __init__(self, root: Path, auth_url: str = AUTH_URL, extra_rc: str = "") -> None:
        site = root / "site"
        for name, text in STAND_IN.items():
            (site / name).parent.mkdir(parents=True, exist_ok=True)
            (site / name).write_text(text)
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "python3").symlink_to(sys.executable)
        self.state = root / "keystone.json"
        endpoints, services = v3_catalog(MODERN_LIST)
        self.state.write_text(json.dumps({"endpoints": endpoints, "services": services,
                                          "fail": None, "requests": [], "sessions": []}))
        self.rc = root / "admin creds" / "keystonerc_admin"
        self.rc.parent.mkdir()
        self.rc.write_text("unset OS_SERVICE_TOKEN\n"
                           f"export OS_USERNAME=admin\nexport OS_PASSWORD='{PASSWORD}'\n"
                           f"export OS_AUTH_URL={auth_url}\nexport OS_PROJECT_NAME=admin\n"
                           "export OS_USER_DOMAIN_NAME=Default\n"
                           "export OS_PROJECT_DOMAIN_NAME=Default\n"
                           "export OS_REGION_NAME=RegionOne\n" + extra_rc +
                           "echo 'rc files may print things'\n")
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "PYTHONPATH": str(site),
                    "FAKE_KEYSTONE": str(self.state)}

    def shell(self, script: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run `script` with /bin/sh as the host would: (exit, stdout, stderr)."""
        done = subprocess.run(["/bin/sh", "-c", script], input=stdin or b"",
                              capture_output=True, env=self.env, timeout=60, check=False)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def handler(self, host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        """A FakeTransport handler: every script of the original runs for real here."""
        return self.shell(script, stdin)

    def run(self, command: Command) -> tuple[int, str, str]:
        return self.shell(command.script, command.stdin)

    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state.read_text())
        return data

    def fail_on(self, ident: str) -> None:
        self.state.write_text(json.dumps({**self.load(), "fail": ident}))

    def urls(self) -> dict[str, str]:
        return {e["id"]: e["url"] for e in self.load()["endpoints"]}

    def patches(self) -> list[tuple[str, str]]:
        """Each PATCH as (endpoint id, url asked for), in order."""
        return [(url.rsplit("/", 1)[1], body["endpoint"]["url"])
                for method, url, body in self.load()["requests"] if method == "PATCH"]


@pytest.fixture(scope="module")
def guide2() -> Inventory:
    return load_inventory(COLOCATED)


def op_for(guide2: Inventory, fake: FakeKeystone) -> EndpointsOnVip:
    return replace(endpoints_op(guide2), rc=str(fake.rc))


def probe_of(fake: FakeKeystone, op: EndpointsOnVip) -> Probe:
    """The operation's fact, as its listing program prints it now."""
    code, out, _ = fake.shell(op.fact(ctx_of(load_inventory(COLOCATED))).command or "")
    return Probe(out, exited=code)


def test_the_listing_is_the_openstack_cli_s_with_one_authentication(tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path, extra_rc="export OS_CACERT=/etc/ssl/certs/ca.pem\n")
    code, out, err = fake.shell(list_command(str(fake.rc)))
    assert code == 0, err
    assert json.loads(out) == MODERN_LIST  # the very records the openstack CLI printed
    state = fake.load()
    assert [r[:2] for r in state["requests"]] == [["GET", f"{API}/services"],
                                                 ["GET", f"{API}/endpoints"]]
    (session,) = state["sessions"]
    assert session["verify"] == "/etc/ssl/certs/ca.pem"
    auth = {k: v for k, v in session["auth"].items() if v is not None}
    assert auth == {"auth_url": API, "username": "admin", "password": PASSWORD,
                    "user_domain_name": "Default", "project_name": "admin",
                    "project_domain_name": "Default"}
    assert PASSWORD not in out + err + list_command(str(fake.rc))


@pytest.mark.parametrize("auth_url", ["http://192.168.1.221:5000/v2.0/",
                                      "http://192.168.1.221:5000", f"{AUTH_URL}/"])
def test_requests_go_to_the_v3_api_of_os_auth_url(tmp_path: Path, auth_url: str) -> None:
    fake = FakeKeystone(tmp_path, auth_url=auth_url)
    assert fake.shell(list_command(str(fake.rc)))[0] == 0
    (session,) = fake.load()["sessions"]
    assert session["auth"]["auth_url"] == API
    assert {r[1] for r in fake.load()["requests"]} == {f"{API}/services", f"{API}/endpoints"}


def test_set_moves_in_order_says_what_moved_and_skips_what_is_right(
        guide2: Inventory, tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    op = op_for(guide2, fake)
    ctx = ctx_of(guide2)
    listed = op.read(ctx, probe_of(fake, op))
    (command,) = op.apply(ctx, listed)
    code, out, err = fake.run(command)
    assert code == 0, err
    assert fake.patches() == _modern_expected()
    assert fake.patches()[-1][0] == IDENTITY_PUBLIC
    assert op.outcome(ctx, [out]) == {"moved": [i for i, _ in _modern_expected()]}
    assert len(fake.load()["sessions"]) == 2  # the listing's process and this one
    assert op.done(ctx, op.read(ctx, probe_of(fake, op)))
    # run again: every endpoint already has its URL, nothing is sent
    code, out, _ = fake.run(command)
    assert code == 0 and framing.tagged_words(SET, out) == []
    assert len(fake.patches()) == len(_modern_expected())
    assert PASSWORD not in out + err + command.script + (command.stdin or b"").decode()


def test_set_refuses_an_endpoint_that_is_gone_before_changing_anything(
        guide2: Inventory, tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    op = op_for(guide2, fake)
    ctx = ctx_of(guide2)
    record = op.intent(ctx, op.read(ctx, probe_of(fake, op)))
    record["old"].append({"id": "deleted-by-hand", "interface": "admin", "url": "http://x:1"})
    (undo,) = undo_endpoints(ctx, record)
    code, out, err = fake.run(undo)
    assert code == 1
    assert framing.after_tag(ERROR, out) == (" endpoint(s) deleted-by-hand are not in the "
                                             "catalog any more; nothing was changed\n")
    assert "deleted-by-hand" in err and fake.patches() == []


def test_without_keystoneauth1_the_error_names_the_package(tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    broken = tmp_path / "broken" / "keystoneauth1"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('No module named keystoneauth1')\n")
    fake.env["PYTHONPATH"] = str(broken.parent)
    code, out, _ = fake.shell(list_command(str(fake.rc)))
    assert code == 1
    assert "python3 cannot import keystoneauth1, which the openstack CLI needs too (package " \
           "python3-keystoneauth1)" in (framing.after_tag(ERROR, out) or "")


def test_a_move_that_fails_half_way_is_undone_exactly_from_the_journal(
        guide2: Inventory, tmp_path: Path) -> None:
    """Through the engine: the PATCH of neutron's public endpoint fails after 11 moved. The
    journal holds the intent (all 14 old URLs) and what the failed command reported it moved
    (the 11); the immediate undo puts back exactly those, newest first, in one process."""
    fake = FakeKeystone(tmp_path)
    neutron_public = "9c0d1e2f3a4b45c6d7e8f9a0b1c2d3e4"
    fake.fail_on(neutron_public)
    before = fake.urls()
    host = guide2.original.name
    transport = FakeTransport()
    transport.on(fake.handler)
    events: list[Event] = []
    engine = Engine(transport, {host: guide2.original}, "debian", events.append)
    engine.apply_facts({host: {"platform": "debian", "init": "systemd"}})
    run_id = "20260101-000000-000-t-deploy"
    journal = Journal(tmp_path / "runs" / f"{run_id}.json", run_id, "t", "deploy",
                      "hosts.toml", "fingerprint", now())
    step = Step("ctl.endpoints", "endpoints", {host: (op_for(guide2, fake),)})
    with pytest.raises(StepFailed, match="PATCH of endpoint 9c0d1e2f3a4b45c6d7e8f9a0b1c2d3e4"):
        engine.run(Runbook("t", (step,)), journal)

    expected = _modern_expected()
    failed_at = [i for i, _ in expected].index(neutron_public)
    moved = expected[:failed_at]
    assert len(moved) == 11
    restored = [(ident, before[ident]) for ident, _ in reversed(moved)]
    assert fake.patches() == [*moved, expected[failed_at], *restored]
    assert fake.urls() == before
    entry = Journal.load(journal.path).step("ctl.endpoints").hosts[host]
    (change,) = entry.changes
    assert entry.state == "failed" and change["rolled_back"] is True
    assert change["record"]["moved"] == [ident for ident, _ in moved]
    assert len(change["record"]["old"]) == 14
    # one process each: the listing, the move, the undo (no re-probe after a failure)
    assert len(transport.commands_on(host)) == 3
