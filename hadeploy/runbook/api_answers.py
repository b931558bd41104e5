"""The controllers phase's verify: each API answers on a controller's own address and through
the VIP, judged the way haproxy judges it.

Where the catalog gives a proxy an HTTP check, the probe sends the same `GET path` haproxy's
health check sends and accepts the same statuses (`http-check expect status`), so a wedged API
that still accepts connections fails here as it fails there; other ports get a TCP connect.
One python3 program per host checks every target (each at least once), retrying while the
services start.
"""

from __future__ import annotations

from collections.abc import Sequence

from hadeploy import framing
from hadeploy.catalog import Proxy, Release
from hadeploy.facts import Fact, Probe
from hadeploy.inventory.model import Inventory, Node
from hadeploy.ops import HostContext, Requirement
from hadeploy.quoting import q
from hadeploy.render.haproxy import backend_address

VERIFY_SECONDS = 90
ALL_ANSWER = "all-answer"
# Targets are HOST:PORT (a TCP connect) or HOST:PORT/PATH=STATUSES (GET PATH, expecting a
# status in haproxy's list of codes and ranges). Prints `all-answer`, or one line per target
# that never answered as expected, with what it did answer.
# The status line is read off a plain socket (HTTP/1.1, `Connection: close`), which is all
# haproxy's check reads of the answer too: python3 with no site packages and no module
# beyond socket starts in ~20 ms on a lab controller, against ~60 ms with http.client, and a
# whole plane's probe of one controller runs eleven of these.
API_PROBE = """python3 -I -S - {targets} <<'PYEOF'
import socket, sys, time

def accepts(statuses, code):
    for item in statuses.split(","):
        low, _, high = item.partition("-")
        if int(low) <= code <= int(high or low):
            return True
    return False

def status(host, port, path):
    request = ("GET /" + path + " HTTP/1.1\\r\\nHost: " + host + ":" + port +
               "\\r\\nAccept: */*\\r\\nConnection: close\\r\\n\\r\\n")
    with socket.create_connection((host, int(port)), 2) as conn:
        conn.settimeout(2)
        conn.sendall(request.encode("ascii"))
        head = b""
        while b"\\r\\n" not in head and len(head) < 8192:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    words = head.split(b"\\r\\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise ValueError("not an HTTP answer")
    return int(words[1])

def problem(target):
    where, _, statuses = target.partition("=")
    address, slash, path = where.partition("/")
    host, port = address.rsplit(":", 1)
    if not slash:
        try:
            socket.create_connection((host, int(port)), 2).close()
            return None
        except OSError:
            return address + ": no answer"
    try:
        code = status(host, port, path)
    except (OSError, ValueError):
        return address + " GET /" + path + ": no answer"
    if accepts(statuses, code):
        return None
    return address + " GET /" + path + ": answered " + str(code) + ", expected " + statuses

deadline = time.monotonic() + {seconds}
failing = sys.argv[1:]
while True:
    found = [(t, problem(t)) for t in failing]
    failing = [t for t, p in found if p]
    problems = [p for t, p in found if p]
    if not failing or time.monotonic() >= deadline:
        break
    time.sleep({pause})
print("\\n".join(problems) or "all-answer")
PYEOF"""


def api_target(address: str, proxy: Proxy, release: Release) -> str:
    """One probe target: the proxy's port on `address`, with its HTTP check if it has one."""
    check = proxy.http_check_for(release)
    if check is None:
        return f"{address}:{proxy.port}"
    return f"{address}:{proxy.port}{check.path}={check.status}"


def api_probe_script(targets: Sequence[str], seconds: int = VERIFY_SECONDS,
                     pause: float = 1.0) -> str:
    """The python3 program (as a shell command) that checks every target within `seconds`,
    `pause` seconds between its rounds."""
    return API_PROBE.replace("{targets}", " ".join(q(t) for t in targets)).replace(
        "{seconds}", str(seconds)).replace("{pause}", repr(float(pause)))


def _answer(probe: Probe) -> str:
    return probe.stdout.strip()


def apis_answer(inv: Inventory, node: Node, proxies: Sequence[Proxy]) -> Requirement[str]:
    """Every proxy's API answers as haproxy expects on `node`'s own address and on the VIP."""
    own = backend_address(inv, node)
    targets = [api_target(address, p, inv.release)
               for address in (own, str(inv.vip.address)) for p in proxies]

    def judge(ctx: HostContext, seen: str) -> str | None:
        if seen == ALL_ANSWER:
            return None
        return (f"not answering as haproxy expects after {VERIFY_SECONDS}s: "
                + ("; ".join(seen.splitlines()) or "no output (python3 missing?)"))

    ports = ", ".join(str(p.port) for p in proxies)
    # A no-op re-run takes one look along with its first probe (every target tried once):
    # where everything answers, the step needs no round trip of its own.
    # Each answer is a python3 start and a wait on a daemon: beside the batch's shell probes.
    return Requirement("ports", Fact(framing.beside(api_probe_script(targets)), _answer), judge,
                       f"APIs answer on {own} and the VIP: ports {ports}", waits=True,
                       glance=Fact(framing.beside(api_probe_script(targets, 0)), _answer))
