"""The Galera health responder the guide's haproxy asks on port 9200 (`option httpchk`,
`check port 9200`): copied to a lab host and run there with its own python3.

It answers any request the way Percona's clustercheck does: 200 while the local node's
`wsrep_local_state` is 4 (Synced), 503 otherwise (joining, donor/desynced, or MariaDB not
answering). It asks MariaDB as root over its Unix socket (Debian's root account authenticates
by socket), so it holds no password.

    python3 galera_health.py ADDRESS [PORT]
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state'"
SYNCED = "4"


def local_state() -> str:
    """wsrep_local_state of the local node ("" when MariaDB does not answer)."""
    try:
        out = subprocess.run(["mysql", "-N", "-B", "-e", QUERY], capture_output=True,
                             text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    fields = out.split()
    return fields[1] if len(fields) == 2 else ""


class Handler(BaseHTTPRequestHandler):
    """200 "synced" or 503 with the state, for every method haproxy may send."""

    def _answer(self) -> None:
        state = local_state()
        up = state == SYNCED
        body = (f"Galera node is synced (wsrep_local_state {state})\n" if up else
                f"Galera node is not synced (wsrep_local_state {state or 'unknown'})\n").encode()
        self.send_response(200 if up else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_OPTIONS = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: haproxy asks every check interval."""


def main(argv: list[str]) -> None:
    """Serve on ADDRESS:PORT (default 9200) until killed."""
    address = argv[1]
    port = int(argv[2]) if len(argv) > 2 else 9200
    ThreadingHTTPServer((address, port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
