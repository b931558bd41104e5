"""The Python program that lists and moves Keystone endpoints on the original controller in
one process, and the shell that runs it there with the admin credentials file sourced.

One `openstack` process per endpoint cost 1-2 s of start-up each (26.7 s for the demo's
catalog); this program authenticates once with keystoneauth1 (the library the openstack CLI
uses, so it is on every host that has the CLI) and sends every request over one session. The
credentials stay in the sourced file's environment: never on a command line, in stdin or in
the journal. Endpoint ids and URLs reach it as JSON on stdin.
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
project domains, OS_CACERT, OS_INSECURE, OS_CERT/OS_KEY); one keystoneauth1 session
authenticates once. Every request goes to the identity API that OS_AUTH_URL names, never to
one the catalog names: the catalog is what is being changed (moving the public identity
endpoint must not strand this program), which is also why OS_REGION_NAME and OS_INTERFACE,
which only choose a catalog entry, play no part.
"""
import json
import os
import sys

SET_MARK = "@@SET"
ERROR_MARK = "@@ERROR"


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


def session(api):
    """One keystoneauth1 session with the rc file's v3 password credentials."""
    try:
        from keystoneauth1 import session as ksa_session
        from keystoneauth1.identity import v3
    except ImportError as exc:
        fail("python3 cannot import keystoneauth1, which the openstack CLI needs too "
             "(package python3-keystoneauth1): %s" % exc)
    # As the openstack CLI does: a name without its domain is in OS_DEFAULT_DOMAIN.
    default = env("OS_DEFAULT_DOMAIN", "default")
    user_domain = env("OS_USER_DOMAIN_NAME")
    project_domain = env("OS_PROJECT_DOMAIN_NAME")
    scope = {"system_scope": env("OS_SYSTEM_SCOPE")} if env("OS_SYSTEM_SCOPE") else {}
    auth = v3.Password(
        auth_url=api, username=env("OS_USERNAME"), user_id=env("OS_USER_ID"),
        password=env("OS_PASSWORD"), user_domain_name=user_domain,
        user_domain_id=env("OS_USER_DOMAIN_ID", None if user_domain else default),
        project_name=env("OS_PROJECT_NAME", env("OS_TENANT_NAME")),
        project_id=env("OS_PROJECT_ID", env("OS_TENANT_ID")),
        project_domain_name=project_domain,
        project_domain_id=env("OS_PROJECT_DOMAIN_ID", None if project_domain else default),
        domain_name=env("OS_DOMAIN_NAME"), domain_id=env("OS_DOMAIN_ID"),
        **scope)  # keystoneauth1 older than 3.4 (Queens) has no system scope
    verify = env("OS_CACERT", True)
    if env("OS_INSECURE", "").lower() in ("1", "true", "yes"):
        verify = False
    cert = env("OS_CERT")
    return ksa_session.Session(auth=auth, verify=verify,
                               cert=(cert, env("OS_KEY")) if cert and env("OS_KEY") else cert)


def call(ksa, method, url, **kwargs):
    """The JSON answer of one request, or exit saying which request failed and why."""
    try:
        return ksa.request(url, method, **kwargs).json()
    except Exception as exc:  # keystoneauth1's errors and the network's alike
        fail("%s %s failed: %s: %s" % (method, url, type(exc).__name__, exc))


def endpoints(ksa, api):
    """Every endpoint of the catalog (refused when keystone's list_limit cut the list)."""
    answer = call(ksa, "GET", api + "/endpoints")
    if answer.get("truncated"):
        fail("keystone truncated the endpoint list (its [DEFAULT] list_limit): "
             "raise the limit so that every endpoint can be seen")
    return answer["endpoints"]


def listing(ksa, api):
    """The endpoints as `openstack endpoint list -f json` shows them."""
    services = {s["id"]: s for s in call(ksa, "GET", api + "/services")["services"]}
    rows = []
    for e in endpoints(ksa, api):
        service = services.get(e.get("service_id"), {})
        rows.append({"ID": e["id"], "Region": e.get("region_id") or e.get("region") or "",
                     "Service Name": service.get("name", ""),
                     "Service Type": service.get("type", ""),
                     "Enabled": e.get("enabled", True), "Interface": e.get("interface", ""),
                     "URL": e.get("url", "")})
    return rows


def set_urls(ksa, api, wanted):
    """Give each endpoint of `wanted` its URL, in order; print each one changed."""
    current = dict((e["id"], e.get("url")) for e in endpoints(ksa, api))
    missing = [w["id"] for w in wanted if w["id"] not in current]
    if missing:
        fail("endpoint(s) %s are not in the catalog any more; nothing was changed"
             % ", ".join(missing))
    changed = []
    for w in wanted:
        if current[w["id"]] == w["url"]:
            continue
        try:
            ksa.patch(api + "/endpoints/" + w["id"], json={"endpoint": {"url": w["url"]}})
        except Exception as exc:
            fail("PATCH of endpoint %s (url %s) failed: %s: %s; changed before it: %s"
                 % (w["id"], w["url"], type(exc).__name__, exc, ", ".join(changed) or "none"))
        changed.append(w["id"])
        sys.stdout.write(SET_MARK + " " + w["id"] + " " + w["url"] + "\\n")
        sys.stdout.flush()


def main():
    mode = sys.argv[1:] and sys.argv[1]
    if mode not in ("list", "set"):
        fail("usage: python3 -c PROGRAM list|set")
    wanted = json.load(sys.stdin) if mode == "set" else None
    api = identity_api()
    ksa = session(api)
    if mode == "list":
        sys.stdout.write(json.dumps(listing(ksa, api)) + "\\n")
    else:
        set_urls(ksa, api, wanted)


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
