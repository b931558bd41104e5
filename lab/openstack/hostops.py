"""Small operations on a lab host used while provisioning OpenStack: run a script, write or
edit a file through stdin (contents never on a command line), wait for a daemon's port."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence

from hadeploy.render.ini import set_ini_value
from lab.errors import LabError
from lab.hosts import LabHost


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block took to `timings[name]` (rounded to 0.1 s)."""
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + time.monotonic() - started, 1)


def has_candidate(host: LabHost, package: str) -> bool:
    """Whether apt on the host can install `package` (the lab's repository holds it)."""
    out = host.exec(["apt-cache", "policy", package], check=False).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def run(host: LabHost, script: str, args: Sequence[str], what: str, *,
        input: str | None = None, timeout: float = 300,
        env: dict[str, str] | None = None) -> str:
    """Run a shell script on the host as root; a failure becomes a LabError with its stderr."""
    argv = ["/bin/sh", "-c", script, "hadeploy-lab", *args]
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    result = host.exec(argv, check=False, input=input, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise LabError(f"{host.name}: could not {what} (exit {result.returncode})\n{tail}")
    return result.stdout


def run_python(host: LabHost, code: str, stdin: str, what: str, timeout: float = 300) -> str:
    """Run Python code on the host with its own python3; parameters come on stdin."""
    result = host.exec(["python3", "-c", code], check=False, input=stdin, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-12:])
        raise LabError(f"{host.name}: could not {what} (exit {result.returncode})\n{tail}")
    return result.stdout


def write(host: LabHost, path: str, text: str, owner: str, group: str, mode: str) -> None:
    """Write a file on the host through stdin (contents never on a command line)."""
    run(host, 'umask 077; cat >"$1.hadeploy-tmp"; chown "$2:$3" "$1.hadeploy-tmp"; '
        'chmod "$4" "$1.hadeploy-tmp"; mv -f "$1.hadeploy-tmp" "$1"',
        [path, owner, group, mode], f"write {path}", input=text)


def edit_ini(host: LabHost, path: str, edits: Sequence[tuple[str, str, str]]) -> None:
    """Set keys of an ini file on the host in place (owner, mode and comments kept)."""
    text = host.exec(["cat", path]).stdout
    for section, key, value in edits:
        text = set_ini_value(text, section, key, value)
    run(host, 'cat >"$1"', [path], f"edit {path}", input=text)


def edit_lines(host: LabHost, path: str, pattern: str, line: str) -> None:
    """Replace every line of a file on the host matching `pattern` by `line` (append it if
    none matches), in place."""
    text = host.exec(["cat", path]).stdout
    regex = re.compile(f"^(?:{pattern})$", re.MULTILINE)
    text, count = regex.subn(lambda _: line, text)
    if count == 0:
        text += ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    run(host, 'cat >"$1"', [path], f"edit {path}", input=text)


def wait_started(host: LabHost, service: str, port: int, path: str | None,
                 seconds: float = 90, log_glob: str | None = None) -> None:
    """Wait until a daemon just started answers HTTP on its port, or accepts a TCP connection
    if `path` is None (init scripts say "ok" for daemons that died at once)."""
    def answers() -> bool:
        if path is None:
            return tcp_answers(host.address, port)
        return http_answers(host.address, port, path)

    if not wait(answers, seconds):
        logs = log_glob or f"/var/log/{service.split('-')[0]}/*.log"
        log = host.exec(f"tail -n 15 {logs} 2>/dev/null || true", check=False).stdout
        raise LabError(f"{host.name}: {service} did not answer on {host.address}:{port} "
                       f"within {seconds:.0f} s\n{log}")


def process_running(host: LabHost, pattern: str) -> bool:
    """Whether a process of the host matches `pattern` (pgrep -f; hosts have their own PIDs)."""
    return host.exec(["pgrep", "-f", pattern], check=False).returncode == 0


def tcp_answers(address: str, port: int) -> bool:
    """Whether something accepts a TCP connection on address:port."""
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


def http_answers(address: str, port: int, path: str) -> bool:
    """Whether an HTTP GET of `path` gets any answer below 500."""
    connection = http.client.HTTPConnection(address, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def wait(check: Callable[[], bool], seconds: float) -> bool:
    """Poll `check` every half second until it holds or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def host_pss_bytes(host: LabHost) -> int:
    """Proportional memory (PSS) of every process of a lab host, in bytes."""
    out = host.exec("cat /proc/[0-9]*/smaps_rollup 2>/dev/null || true").stdout
    return sum(int(line.split()[1]) * 1024 for line in out.splitlines()
               if line.startswith("Pss:"))
