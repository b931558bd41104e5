"""A direct SSH connection loads neither fabric nor invoke; one through an ssh_config or a
gateway does, and then paramiko's `Match exec` works as before. Each check runs a fresh
interpreter, since what is loaded is the point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DIRECT = """
import json, sys
from hadeploy.transport.links import DirectLink
link = DirectLink("198.18.0.11", "ops", 22, {}, 5.0)
assert not link.is_connected
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("invoke", "fabric"))))
"""

# `Match exec` runs its command through invoke: `true` matches, `false` does not.
MATCH_EXEC = """
import json
{first}
from hadeploy.transport.links import fabric_link, paramiko
{then}
config = paramiko.SSHConfig.from_text(
    "Match exec true\\n  User matched\\nMatch exec false\\n  Port 2222\\n")
print(json.dumps(config.lookup("ctl1")))
"""
VIA_FABRIC = ('fabric_link("198.18.0.11", "ops", 22, {}, 5.0, None, "ops@198.18.0.9", '
              'lambda link, host: None)')


def fresh(code: str) -> object:
    """What `code`, run by a fresh interpreter, printed as JSON on its last line."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_direct_connection_loads_neither_fabric_nor_invoke() -> None:
    assert fresh(DIRECT) == []


@pytest.mark.parametrize("first", ["", "import invoke"], ids=["hadeploy", "invoke-task"])
def test_match_exec_works_once_a_connection_needs_fabric(first: str) -> None:
    found = fresh(MATCH_EXEC.format(first=first, then=VIA_FABRIC))
    assert isinstance(found, dict)
    assert found["user"] == "matched" and "port" not in found
