"""Host-key policies: strict by default; `accept-new` records unknown keys, never changed ones.

paramiko raises BadHostKeyException for a key that differs from known_hosts before any
missing-key policy is consulted, so a changed key is refused under both policies.
"""

from __future__ import annotations

import threading
from pathlib import Path

from hadeploy.errors import HostKeyError
from hadeploy.transport.links import paramiko


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse hosts that are not in known_hosts, saying how to opt in."""

    def __init__(self, known_hosts: Path, node: str) -> None:
        self.known_hosts = known_hosts
        self.node = node

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise HostKeyError(
            self.node,
            f"host key of {hostname} ({key.get_name()} "
            f"{key.fingerprint}) is not in {self.known_hosts}; nothing was run. Check the "
            f"fingerprint on the host's console, then add it (ssh-keyscan {hostname} >> "
            f"{self.known_hosts}) or set ssh.host_key_policy = \"accept-new\" to record new "
            "keys on first use",
        )


class RecordUnknown(paramiko.MissingHostKeyPolicy):
    """Accept a host seen for the first time and append its key to known_hosts."""

    _lock = threading.Lock()

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.known_hosts.open("a", encoding="utf-8") as handle:
                handle.write(line)
            self.known_hosts.chmod(0o600)
        client.get_host_keys().add(hostname, key.get_name(), key)
