"""The Python program that lists and moves Keystone endpoints on the original controller in
one process, and the shell that runs it there with the admin credentials file sourced.

One `openstack` process per endpoint cost 1-2 s of start-up each (26.7 s for the demo's
catalog); this program logs in once and sends every request over one HTTP connection, with
Python's standard library only: keystoneauth1, the openstack CLI's library, took ~0.9 s of
every run's start-up on a lab controller just to import, and the program runs in a whole
plane's probe, its move and its verify. The credentials stay in the sourced file's
environment: never on a command line, in stdin or in the journal. Endpoint ids and URLs
reach it as JSON on stdin.
"""

from __future__ import annotations

import json
from typing import Any

from hadeploy import framing
from hadeploy.ops.base import Command
from hadeploy.quoting import q

# `set` prints `@@hadeploy-endpoint-set ID URL` for each endpoint it changed, as it goes.
SET = "hadeploy-endpoint-set"
# Either mode prints `@@hadeploy-endpoint-error MESSAGE` before it exits 1 (probes drop stderr).
ERROR = "hadeploy-endpoint-error"
PYTHON = "python3"

_SOURCE = '''\
"""hadeploy's Keystone endpoint program, run by python3 on the original controller.

`list` prints the catalog's endpoints as one JSON array, in the records of `openstack
endpoint list -f json`. `set` reads [{"id": ID, "url": URL}, ...] on stdin and gives each
endpoint its URL in that order, printing a tagged line for each one it changed and skipping
those already right; it stops at the first failure, so what it printed is what moved.

Credentials are the OS_* variables of the sourced admin rc file (v3 password, user and
project domains, OS_CACERT, OS_INSECURE, OS_CERT/OS_KEY), scoped as the openstack CLI scopes
them; one login, one token, one connection (http.client). Every request goes to the
identity API that OS_AUTH_URL names, never to one the catalog names: the catalog is what is
being changed (moving the public identity endpoint must not strand this program), which is
also why OS_REGION_NAME and OS_INTERFACE, which only choose a catalog entry, play no part.
"""
import json
import os
import sys

SET_MARK = "@@SET"
ERROR_MARK = "@@ERROR"
TIMEOUT = 60  # seconds for a connection or an answer, as long as a host's probe waits


def fail(message):
    """Say why (tagged on stdout, which probes keep, and plain on stderr) and exit 1."""
    text = " ".join(str(message).split())
    sys.stdout.write(ERROR_MARK + " " + text + "\\n")
    sys.stderr.write(text + "\\n")
    sys.exit(1)


def env(name, fallback=None):
    """The variable if set and not empty, else `fallback` (another variable's value)."""
    return os.environ.get(name) or fallback


def identity_api():
    """The v3 API of OS_AUTH_URL, whichever version (or none) that URL names."""
    url = env("OS_AUTH_URL", "").rstrip("/")
    if not url:
        fail("OS_AUTH_URL is not set once the credentials file is sourced")
    if url.endswith("/v2.0"):
        url = url[:-len("/v2.0")]
    return url if url.endswith("/v3") else url + "/v3"


def domain(prefix, default=None):
    """{"id": ...} or {"name": ...} from OS_<PREFIX>DOMAIN_ID/_NAME, else `default`'s id."""
    ident = env("OS_%sDOMAIN_ID" % prefix)
    name = env("OS_%sDOMAIN_NAME" % prefix)
    if ident or (default and not name):
        return {"id": ident or default}
    return {"name": name} if name else None


def auth_request():
    """Keystone v3's password authentication of the rc file's credentials, scoped as the
    openstack CLI (keystoneauth1's v3.Password) scopes them: a name without its domain is in
    OS_DEFAULT_DOMAIN; a project, else a domain, else the system scope."""
    default = env("OS_DEFAULT_DOMAIN", "default")
    user = {"password": env("OS_PASSWORD")}
    if env("OS_USER_ID"):
        user["id"] = env("OS_USER_ID")
    else:
        user["name"] = env("OS_USERNAME")
    user_domain = domain("USER_", default)
    if user_domain:
        user["domain"] = user_domain
    body = {"identity": {"methods": ["password"], "password": {"user": user}}}
    project_id = env("OS_PROJECT_ID", env("OS_TENANT_ID"))
    project_name = env("OS_PROJECT_NAME", env("OS_TENANT_NAME"))
    if env("OS_DOMAIN_ID") or env("OS_DOMAIN_NAME"):
        body["scope"] = {"domain": domain("")}
    elif project_id:
        body["scope"] = {"project": {"id": project_id}}
    elif project_name:
        body["scope"] = {"project": {"name": project_name,
                                     "domain": domain("PROJECT_", default)}}
    elif env("OS_SYSTEM_SCOPE"):
        body["scope"] = {"system": {env("OS_SYSTEM_SCOPE"): True}}
    return {"auth": body}


def tls():
    """The TLS context of OS_CACERT, OS_INSECURE and OS_CERT/OS_KEY."""
    import ssl

    context = ssl.create_default_context(cafile=env("OS_CACERT"))
    if env("OS_INSECURE", "").lower() in ("1", "true", "yes"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if env("OS_CERT"):
        context.load_cert_chain(env("OS_CERT"), env("OS_KEY"))
    return context


class Keystone:
    """Keystone's v3 API at `api` over one HTTP connection, with one token: the standard
    library's http.client (keystoneauth1, which the CLI uses, takes ~1 s to import)."""

    def __init__(self, api):
        import http.client
        from urllib.parse import urlsplit

        self.http = http.client
        parts = urlsplit(api)
        self.api, self.path = api, parts.path
        if parts.scheme == "https":
            self.connection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=TIMEOUT, context=tls())
        else:
            self.connection = http.client.HTTPConnection(parts.hostname, parts.port,
                                                         timeout=TIMEOUT)
        self.token = None
        self.used = False  # whether the connection has carried a request (may be stale)
        self.token = self.send("POST", "/auth/tokens", auth_request(), "X-Subject-Token")

    def send(self, method, path, body=None, header=None):
        """The JSON answer of one request (or the answer's `header`), else exit saying
        which request failed and why."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["X-Auth-Token"] = self.token
        for attempt in (1, 2):
            try:
                self.connection.request(method, self.path + path, body=data, headers=headers)
                answer = self.connection.getresponse()
                text = answer.read()
                break
            except (self.http.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as exc:
                # a server that closed the kept-alive connection between two requests
                # without saying so: every request after the login is idempotent (a GET,
                # a PATCH setting a URL), so it goes once more on a new connection
                self.connection.close()
                if attempt == 2 or not self.used:
                    raise Failed("%s: %s" % (type(exc).__name__, exc))
            except (OSError, self.http.HTTPException) as exc:
                raise Failed("%s: %s" % (type(exc).__name__, exc))
        self.used = True
        if answer.status >= 400:
            said = " ".join(text.decode("utf-8", "replace").split())[:300]
            raise Failed("HTTP %d %s: %s" % (answer.status, answer.reason, said))
        if header is not None:
            value = answer.getheader(header)
            if not value:
                raise Failed("HTTP %d without the %s header" % (answer.status, header))
            return value
        try:
            return json.loads(text or b"{}")
        except ValueError as exc:
            raise Failed("not JSON: %s" % exc)

    def call(self, method, path, body=None):
        """`send`, exiting with the request named when it fails."""
        try:
            return self.send(method, path, body)
        except Failed as exc:
            fail("%s %s failed: %s" % (method, self.api + path, exc))


class Failed(Exception):
    """A request that got no answer, or an error."""


def session(api):
    """The authenticated API, or exit saying why the login failed."""
    try:
        return Keystone(api)
    except Failed as exc:
        fail("POST %s/auth/tokens (login of the rc file's user) failed: %s" % (api, exc))


def endpoints(ksa):
    """Every endpoint of the catalog (refused when keystone's list_limit cut the list)."""
    answer = ksa.call("GET", "/endpoints")
    if answer.get("truncated"):
        fail("keystone truncated the endpoint list (its [DEFAULT] list_limit): "
             "raise the limit so that every endpoint can be seen")
    return answer["endpoints"]


def listing(ksa):
    """The endpoints as `openstack endpoint list -f json` shows them."""
    services = {s["id"]: s for s in ksa.call("GET", "/services")["services"]}
    rows = []
    for e in endpoints(ksa):
        service = services.get(e.get("service_id"), {})
        rows.append({"ID": e["id"], "Region": e.get("region_id") or e.get("region") or "",
                     "Service Name": service.get("name", ""),
                     "Service Type": service.get("type", ""),
                     "Enabled": e.get("enabled", True), "Interface": e.get("interface", ""),
                     "URL": e.get("url", "")})
    return rows


def set_urls(ksa, wanted):
    """Give each endpoint of `wanted` its URL, in order; print each one changed."""
    current = dict((e["id"], e.get("url")) for e in endpoints(ksa))
    missing = [w["id"] for w in wanted if w["id"] not in current]
    if missing:
        fail("endpoint(s) %s are not in the catalog any more; nothing was changed"
             % ", ".join(missing))
    changed = []
    for w in wanted:
        if current[w["id"]] == w["url"]:
            continue
        try:
            ksa.send("PATCH", "/endpoints/" + w["id"], {"endpoint": {"url": w["url"]}})
        except Failed as exc:
            fail("PATCH of endpoint %s (url %s) failed: %s; changed before it: %s"
                 % (w["id"], w["url"], exc, ", ".join(changed) or "none"))
        changed.append(w["id"])
        sys.stdout.write(SET_MARK + " " + w["id"] + " " + w["url"] + "\\n")
        sys.stdout.flush()


def main():
    mode = sys.argv[1:] and sys.argv[1]
    if mode not in ("list", "set"):
        fail("usage: python3 -c PROGRAM list|set")
    wanted = json.load(sys.stdin) if mode == "set" else None
    ksa = session(identity_api())
    if mode == "list":
        sys.stdout.write(json.dumps(listing(ksa)) + "\\n")
    else:
        set_urls(ksa, wanted)


main()
'''

# The program's text, with the tags hadeploy.framing reads back.
PROGRAM = _SOURCE.replace("@@SET", framing.tag(SET)).replace("@@ERROR", framing.tag(ERROR))


def _run(rc: str, mode: str) -> str:
    """Shell: source `rc` (its output would mix with the program's), then run the program."""
    return f". {q(rc)} >/dev/null && {PYTHON} -c {q(PROGRAM)} {mode}"


def list_command(rc: str) -> str:
    """The read-only command whose stdout `parse_listing` reads."""
    return _run(rc, "list")


def set_command(rc: str, urls: list[tuple[str, str]], summary: str) -> Command:
    """One command giving each endpoint id its URL, in the order of `urls`."""
    wanted = [{"id": ident, "url": url} for ident, url in urls]
    return Command(_run(rc, "set"), stdin=json.dumps(wanted).encode(), summary=summary)


def parse_listing(stdout: str, exited: int, rc: str) -> list[dict[str, Any]]:
    """The records `list` printed; ValueError saying why when it failed."""
    if exited != 0:
        said = framing.after_tag(ERROR, stdout)
        why = said.strip().split("\n", 1)[0] if said else f"exit {exited}"
        raise ValueError(f"cannot list endpoints with {rc}: {why}")
    data = json.loads(stdout or "[]")
    if not isinstance(data, list):
        raise ValueError(f"cannot list endpoints with {rc}: the program printed no list")
    return data


def set_ids(outputs: list[str]) -> list[str]:
    """The ids of the endpoints `set` changed, in order, from its stdout."""
    return [words[0] for out in outputs for words in framing.tagged_words(SET, out) if words]
