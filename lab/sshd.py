"""SSH in the lab: the workstation's client key and config, each host's host keys, and the
shell snippets that start, stop and probe a host's real OpenSSH sshd.

Every host gets its own host keys (ed25519 and ECDSA), generated once per lab in the state
directory and copied into the host at boot; `known_hosts` lists them under the host's name
and address, and `ssh_config` pins the client to that file with strict checking, so tests and
the demo talk to the hosts exactly as an operator would: `ssh -F STATE/ssh_config lb1`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lab.procs import run

CLIENT_KEY = "id_ed25519"
SSH_CONFIG = "ssh_config"
KNOWN_HOSTS = "known_hosts"
HOST_KEY_TYPES: tuple[str, ...] = ("ed25519", "ecdsa")

#: Start sshd inside a host and wait for its pid file (its parent exits before writing it).
START_SSHD = r"""
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd
i=0
while [ ! -s /run/sshd.pid ]; do
    i=$((i + 1))
    if [ "$i" -gt 1000 ]; then echo "sshd did not write /run/sshd.pid" >&2; exit 1; fi
    sleep 0.005
done
"""

#: Stop the listening sshd (open sessions survive, as with `service ssh stop`) and wait.
STOP_SSHD = r"""
pid=$(cat /run/sshd.pid 2>/dev/null) || exit 0
kill "$pid" 2>/dev/null || true
i=0
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 1000 ]; then echo "sshd $pid did not stop" >&2; exit 1; fi
    sleep 0.005
done
rm -f /run/sshd.pid
"""

#: sshd dies outright, the listener and every session (a crash, not a stop): SIGKILL to each
#: sshd process of the host, by pid, then wait until nothing listens on port 22 (a connection
#: made while the dying listener's socket still existed would be reset, not refused).
KILL_SSHD = r"""
for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = sshd ] && kill -KILL "${d#/proc/}" 2>/dev/null
done
i=0
while [ -n "$(awk '$4 == "0A" && $2 ~ /:0016$/' /proc/net/tcp /proc/net/tcp6 2>/dev/null)" ]; do
    i=$((i + 1))
    if [ "$i" -gt 1000 ]; then echo "port 22 still listens 5 s after sshd died" >&2; exit 1; fi
    sleep 0.005
done
rm -f /run/sshd.pid
"""

#: Exit 0 if the sshd named in the pid file is running.
SSHD_RUNNING = r"""
pid=$(cat /run/sshd.pid 2>/dev/null) || exit 1
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]
"""

#: Replace the host keys inside a host (known_hosts on the workstation is left as it was).
NEW_HOST_KEYS = r"""
rm -f /etc/ssh/ssh_host_*
for t in ed25519 ecdsa; do
    ssh-keygen -q -t "$t" -N '' -C "root@$(hostname)" -f "/etc/ssh/ssh_host_${t}_key"
done
"""


def make_client_key(state_dir: Path) -> str:
    """Create the lab's client key pair (0600) and return the public key line."""
    key = state_dir / CLIENT_KEY
    for old in (key, key.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hadeploy-lab", "-f", str(key)],
        what="create the lab's SSH client key")
    key.chmod(0o600)
    key.with_suffix(".pub").chmod(0o600)
    return key.with_suffix(".pub").read_text()


def make_host_keys(keys_dir: Path, name: str) -> list[str]:
    """Create a host's keys in `keys_dir`; return their public lines (`type base64`)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for kind in HOST_KEY_TYPES:
        key = keys_dir / f"ssh_host_{kind}_key"
        for old in (key, key.with_name(key.name + ".pub")):
            old.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{name}", "-f", str(key)],
            what=f"create {name}'s SSH host keys")
        kind_name, blob = key.with_name(key.name + ".pub").read_text().split()[:2]
        lines.append(f"{kind_name} {blob}")
    return lines


def write_known_hosts(state_dir: Path, hosts: Iterable[tuple[str, str, list[str]]]) -> None:
    """known_hosts with every host's keys under both its name and its address."""
    lines = [
        f"{name},{address} {key}"
        for name, address, keys in hosts
        for key in keys
    ]
    (state_dir / KNOWN_HOSTS).write_text("\n".join(lines) + "\n")


def write_ssh_config(state_dir: Path, hosts: Iterable[tuple[str, str]]) -> None:
    """ssh_config with one `Host` block per lab host (user hadeploy, lab key, lab known_hosts)."""
    key = state_dir / CLIENT_KEY
    known = state_dir / KNOWN_HOSTS
    blocks = [
        f"# hadeploy lab: ssh -F {state_dir / SSH_CONFIG} <host>\n"
    ]
    for name, address in hosts:
        blocks.append(
            f"Host {name}\n"
            f"    HostName {address}\n"
            "    User hadeploy\n"
            f'    IdentityFile "{key}"\n'
            "    IdentitiesOnly yes\n"
            f'    UserKnownHostsFile "{known}"\n'
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    CheckHostIP no\n"
        )
    (state_dir / SSH_CONFIG).write_text("\n".join(blocks))
