"""A stand-in haproxy CLI for the balancer-side scripts of drained restarts and retirements:
a fake socat on PATH answering from files, a real socket file, and a runner."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hadeploy.ops import Balancers

# A stand-in for `socat - UNIX-CONNECT:SOCKET`: logs each command haproxy would get and
# answers from files: `set` prints $SET_ANSWER, `show stat` the next line of $STAT_ROWS
# (the sessions of ctl1 in glance-api, one line per call), `show servers state` $STATE.
FAKE_SOCAT = """#!/bin/sh
read -r cmd
echo "$cmd" >> "$LOG"
case "$cmd" in
  set*) cat "$SET_ANSWER" ;;
  "show stat")
    n=$(head -n 1 "$STAT_ROWS"); [ "$(wc -l < "$STAT_ROWS")" -gt 1 ] && sed -i 1d "$STAT_ROWS"
    echo "# pxname,svname,qcur,qmax,scur,smax"; echo "glance-api,ctl1,0,0,$n,9"
    echo "glance-api,ctl2,0,0,7,9"
    echo "other-api,ctl1,0,0,5,9" ;;
  "show servers state")
    echo 1; echo "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state"
    cat "$STATE" ;;
esac
"""

LBS = Balancers(("lb1", "lb2"), "", ("glance-api",), drain_seconds=1, up_seconds=1)


def balancers(env: dict[str, str]) -> Balancers:
    return Balancers(LBS.hosts, env["SOCK"], LBS.backends, LBS.drain_seconds, LBS.up_seconds)


def in_env(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env=env)


ANOTHER_UP = "3 glance-api 2 ctl2 198.18.4.22 2 0\n"


def stand_in_cli(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose PATH has the stand-in socat, and a real socket file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "socat"
    fake.write_text(FAKE_SOCAT)
    fake.chmod(0o755)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "stats"))
    files = {name: tmp_path / name for name in ("LOG", "SET_ANSWER", "STAT_ROWS", "STATE")}
    for path in files.values():
        path.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           **{k: str(v) for k, v in files.items()}, "SOCK": str(tmp_path / "stats")}
    try:
        yield env
    finally:
        sock.close()
