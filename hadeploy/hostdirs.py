"""hadeploy's own directory on a host, apart from the operations: the run's lock and records
(`engine.hoststate`) are written there in the first round trip, whose script is built before
the operations' code has loaded."""

from __future__ import annotations

# Every level of it is owner-only (backups hold old secrets, and their paths say what the
# host runs).
HADEPLOY_HOME = "/var/lib/hadeploy"
BACKUP_ROOT = f"{HADEPLOY_HOME}/backup"


def private_dir(directory: str) -> str:
    """Shell lines creating `directory` (a shell word naming a path below HADEPLOY_HOME) and
    making it and every level above it up to HADEPLOY_HOME mode 0700: `mkdir -p -m` sets only
    the last level's mode, and a level an earlier version left wider is narrowed too."""
    return (f"hadeploy_dir={directory}\n"
            '(umask 077 && mkdir -p "$hadeploy_dir")\n'
            'while chmod 700 "$hadeploy_dir"; do\n'
            f'  case "$hadeploy_dir" in {HADEPLOY_HOME}/*) ;; *) break ;; esac\n'
            '  hadeploy_dir=$(dirname "$hadeploy_dir")\n'
            "done\n")
