"""The state of one file on a host: owner, group, mode, sha256 and (when asked) content."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from hadeploy.facts import Fact, Probe
from hadeploy.quoting import q

ABSENT = "absent"


@dataclass(frozen=True)
class FileState:
    """A file as the probe saw it."""

    exists: bool
    owner: str = ""
    group: str = ""
    mode: str = ""
    sha256: str = ""
    content: bytes | None = None


def file_probe(path: str, with_content: bool) -> str:
    """Print owner, group, mode and sha256 of `path` (and base64 content), or `absent`."""
    p = q(path)
    # sha256sum prints `DIGEST  -`: the parser takes the first word (no `cut` process per
    # file: a probe reads every file a host's steps write)
    body = f"stat -c '%U %G %a' {p} && sha256sum < {p}"
    if with_content:
        body += f" && base64 -w0 < {p} && echo"
    return f"if [ -f {p} ]; then {body}; else echo {ABSENT}; fi"


def parse_file_probe(stdout: str) -> FileState:
    """Parse `file_probe` output (no output at all: the file is taken as absent)."""
    lines = stdout.splitlines()
    if not lines or lines[0].strip() == ABSENT:
        return FileState(exists=False)
    owner, group, mode = lines[0].split()
    sha = lines[1].split(" ", 1)[0] if len(lines) > 1 else ""
    content = base64.b64decode(lines[2]) if len(lines) > 2 else None
    return FileState(True, owner, group, mode.zfill(4), sha, content)


def _parse(probe: Probe) -> FileState:
    return parse_file_probe(probe.stdout)


def file_state(path: str, with_content: bool) -> Fact[FileState]:
    """The fact `FileState` of `path` (with its content when `with_content`)."""
    return Fact(file_probe(path, with_content), _parse)
