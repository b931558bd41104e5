"""`python -m tests.lab.killable [--record FILE] [--kill K --at sent|read] -- TASK ARGS...`:
hadeploy as an operator runs it, with its remote commands counted where they meet SSH.

Every command hadeploy sends (probes, batches and changes, on every host) is one
`exec_command` on an SSH channel and one exit status read back. `--record` appends one JSON
line per command sent: its number, the host's address, the command's first line and the Unix
time it was sent (the step that sent it is the one whose `step-started` event came last
before). `--kill K --at sent` kills the process with SIGKILL right after the K-th command was
sent (before its result is read); `--at read` right after the K-th exit status was read
(before hadeploy acts on it). SIGKILL runs no handler, no `finally` and no atexit: the
process dies as a laptop whose battery runs out, which is what the kill-point test needs.
A run that ends instead prints `killable: S sent, R read` on stderr: a run's count varies a
little (a verify whose look finds it done sends no waiting probe; a heartbeat is sent and
never read), so a point past this run's end is told from one that failed to kill.
Test-only: hadeploy itself has no such hook.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paramiko

from hadeploy.cli import main

_lock = threading.Lock()
_counts = {"sent": 0, "read": 0}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def instrument(record: Path | None, kill: int | None, at: str) -> None:
    """Count commands at `paramiko.Channel` (see the module docstring)."""
    exec_command = paramiko.Channel.exec_command
    recv_exit_status = paramiko.Channel.recv_exit_status

    def counted_exec(channel: paramiko.Channel, command: Any) -> None:
        exec_command(channel, command)
        text = command.decode() if isinstance(command, bytes) else str(command)
        with _lock:
            _counts["sent"] += 1
            number = _counts["sent"]
            if record is not None:
                peer = channel.get_transport().getpeername()[0]
                line = text.strip().splitlines()[0] if text.strip() else ""
                with record.open("a") as out:
                    out.write(json.dumps({"n": number, "host": peer, "command": line,
                                          "time": time.time()}) + "\n")
            if at == "sent" and number == kill:
                _die()

    def counted_status(channel: paramiko.Channel) -> int:
        status = recv_exit_status(channel)
        with _lock:
            _counts["read"] += 1
            if at == "read" and _counts["read"] == kill:
                _die()
        return status

    paramiko.Channel.exec_command = counted_exec  # type: ignore[method-assign,assignment]
    paramiko.Channel.recv_exit_status = counted_status  # type: ignore[method-assign,assignment]


def run(argv: list[str]) -> int:
    """Parse the wrapper's options, instrument, then run hadeploy with the rest."""
    parser = argparse.ArgumentParser(prog="killable")
    parser.add_argument("--record", type=Path)
    parser.add_argument("--kill", type=int)
    parser.add_argument("--at", choices=("sent", "read"), default="sent")
    parser.add_argument("hadeploy", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.hadeploy[1:] if args.hadeploy[:1] == ["--"] else args.hadeploy
    instrument(args.record, args.kill, args.at)
    sys.argv = ["hadeploy", *rest]
    try:
        return main()
    finally:
        print(f"killable: {_counts['sent']} sent, {_counts['read']} read", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
