"""The endpoint program itself, run by python3 under /bin/sh as on the original controller.

No Keystone runs here: a stand-in on PYTHONPATH (sitecustomize) answers the Keystone v3
calls the program makes through http.client from a JSON file (the catalog) and logs every
login and request. What runs for real is the shell the operation builds (the rc file
sourced by `.`), the program's text, its requests and TLS settings and, in the last test,
the engine: a move that fails half-way, and the undo the engine runs from the journal at
once. The lab's tests run it against a real Keystone.
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
from tests.certs import CertAuthority
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

# Keystone's v3 API as far as the program uses it, behind http.client: a sitecustomize on
# PYTHONPATH swaps the connection classes for one answering from the state file (the
# catalog), which logs every login and request. The program's own HTTP, JSON and TLS
# settings run for real; only the socket is not opened.
STAND_IN = {
    "sitecustomize.py": """
import http.client
import json
import os

PATH = os.environ["FAKE_KEYSTONE"]
TOKEN = "gAAAAA-test-token"


def load():
    with open(PATH) as f:
        return json.load(f)


def save(state):
    with open(PATH, "w") as f:
        json.dump(state, f)


class Answer:
    def __init__(self, status, body, headers=None):
        self.status, self.reason = status, {200: "OK", 201: "Created"}.get(status, "Error")
        self.body = json.dumps(body).encode()
        self.headers = headers or {}

    def read(self):
        return self.body

    def getheader(self, name, default=None):
        return self.headers.get(name, default)


class Connection:
    def __init__(self, host, port=None, timeout=None, context=None):
        self.base = "%s://%s%s" % ("https" if context is not None else "http", host,
                                   ":%s" % port if port else "")
        self.context = context
        self.answer = None

    def request(self, method, path, body=None, headers=None):
        url = self.base + path
        body = json.loads(body) if body else None
        state = load()
        if method == "POST" and path.endswith("/auth/tokens"):
            tls = None
            if self.context is not None:
                tls = {"verify": self.context.verify_mode != 0,
                       "check_hostname": self.context.check_hostname}
            state["sessions"].append({"url": url, "auth": body["auth"], "tls": tls})
            save(state)
            self.answer = Answer(201, {"token": {}}, {"X-Subject-Token": TOKEN})
            return
        assert headers["X-Auth-Token"] == TOKEN, "a request without the login's token"
        if state["drops"] > 0:  # the server closed the kept-alive connection unannounced
            state["drops"] -= 1
            save(state)
            raise http.client.RemoteDisconnected("Remote end closed connection")
        state["requests"].append([method, url, body])
        save(state)
        if method == "GET" and url.endswith("/endpoints"):
            self.answer = Answer(200, {"endpoints": state["endpoints"]})
        elif method == "GET" and url.endswith("/services"):
            self.answer = Answer(200, {"services": state["services"]})
        elif method == "PATCH":
            ident = url.rsplit("/", 1)[1]
            if ident == state["fail"]:
                self.answer = Answer(503, {"error": {"message": "Service Unavailable"}})
                return
            (endpoint,) = [e for e in state["endpoints"] if e["id"] == ident]
            endpoint["url"] = body["endpoint"]["url"]
            save(state)
            self.answer = Answer(200, {"endpoint": endpoint})
        else:
            raise AssertionError("unexpected request %s %s" % (method, url))

    def getresponse(self):
        return self.answer

    def close(self):
        self.answer = None


http.client.HTTPConnection = Connection
http.client.HTTPSConnection = Connection
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
    """A tmp dir with the stand-in Keystone, a `python3` on PATH, an admin rc file with a
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
                                          "fail": None, "requests": [], "sessions": [],
                                          "drops": 0}))
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


# What Keystone gets at the login: the rc file's v3 password credentials, as the openstack
# CLI sends them (names with their domains, the project scope).
LOGIN = {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "password": PASSWORD, "domain": {"name": "Default"}}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}


def test_the_listing_is_the_openstack_cli_s_with_one_login(tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    code, out, err = fake.shell(list_command(str(fake.rc)))
    assert code == 0, err
    assert json.loads(out) == MODERN_LIST  # the very records the openstack CLI printed
    state = fake.load()
    assert [r[:2] for r in state["requests"]] == [["GET", f"{API}/services"],
                                                 ["GET", f"{API}/endpoints"]]
    (session,) = state["sessions"]
    assert session == {"url": f"{API}/auth/tokens", "auth": LOGIN, "tls": None}
    assert PASSWORD not in out + err + list_command(str(fake.rc))


@pytest.mark.parametrize(("rc", "scope"), [
    ("export OS_USER_ID=u1\nexport OS_PROJECT_ID=p1\n",
     {"user": {"id": "u1", "password": PASSWORD, "domain": {"name": "Default"}},
      "scope": {"project": {"id": "p1"}}}),
    ("unset OS_USER_DOMAIN_NAME OS_PROJECT_DOMAIN_NAME\n",
     {"user": {"name": "admin", "password": PASSWORD, "domain": {"id": "default"}},
      "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}),
    ("unset OS_PROJECT_NAME\nexport OS_DOMAIN_NAME=Default\n",
     {"user": {"name": "admin", "password": PASSWORD, "domain": {"name": "Default"}},
      "scope": {"domain": {"name": "Default"}}}),
    ("unset OS_PROJECT_NAME\nexport OS_SYSTEM_SCOPE=all\n",
     {"user": {"name": "admin", "password": PASSWORD, "domain": {"name": "Default"}},
      "scope": {"system": {"all": True}}}),
], ids=["ids", "default-domain", "domain-scope", "system-scope"])
def test_the_login_scopes_as_the_openstack_cli_does(tmp_path: Path, rc: str,
                                                    scope: dict[str, Any]) -> None:
    fake = FakeKeystone(tmp_path, extra_rc=rc)
    code, _, err = fake.shell(list_command(str(fake.rc)))
    assert code == 0, err
    (session,) = fake.load()["sessions"]
    auth = session["auth"]
    assert auth["identity"] == {"methods": ["password"], "password": {"user": scope["user"]}}
    assert auth["scope"] == scope["scope"]


def test_https_takes_the_rc_files_ca_or_its_insecure(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(CertAuthority.create().pem())
    https = AUTH_URL.replace("http:", "https:")
    for extra, verify in ((f"export OS_CACERT='{ca}'\n", True),
                          ("export OS_INSECURE=true\n", False)):
        fake = FakeKeystone(tmp_path / str(verify), auth_url=https, extra_rc=extra)
        code, _, err = fake.shell(list_command(str(fake.rc)))
        assert code == 0, err
        (session,) = fake.load()["sessions"]
        assert session["url"] == https + "/auth/tokens"
        assert session["tls"] == {"verify": verify, "check_hostname": verify}
    fake = FakeKeystone(tmp_path / "missing", auth_url=https,
                        extra_rc=f"export OS_CACERT='{tmp_path / 'none.pem'}'\n")
    assert fake.shell(list_command(str(fake.rc)))[0] != 0  # a CA file that is not there


@pytest.mark.parametrize("auth_url", ["http://192.168.1.221:5000/v2.0/",
                                      "http://192.168.1.221:5000", f"{AUTH_URL}/"])
def test_requests_go_to_the_v3_api_of_os_auth_url(tmp_path: Path, auth_url: str) -> None:
    fake = FakeKeystone(tmp_path, auth_url=auth_url)
    assert fake.shell(list_command(str(fake.rc)))[0] == 0
    (session,) = fake.load()["sessions"]
    assert session["url"] == f"{API}/auth/tokens"
    assert {r[1] for r in fake.load()["requests"]} == {f"{API}/services", f"{API}/endpoints"}


def test_a_connection_the_server_closed_unannounced_is_opened_again_once(
        tmp_path: Path) -> None:
    fake = FakeKeystone(tmp_path)
    fake.state.write_text(json.dumps({**fake.load(), "drops": 1}))
    code, out, err = fake.shell(list_command(str(fake.rc)))
    assert code == 0, err
    assert json.loads(out) == MODERN_LIST
    fake.state.write_text(json.dumps({**fake.load(), "drops": 2}))  # twice: it says so
    code, out, _ = fake.shell(list_command(str(fake.rc)))
    assert code == 1
    assert "GET http://192.168.1.221:5000/v3/services failed: RemoteDisconnected" in (
        framing.after_tag(ERROR, out) or "")


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
