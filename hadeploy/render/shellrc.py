"""Read and set a variable in a shell rc file (`export OS_AUTH_URL=...`), keeping its style."""

from __future__ import annotations

import re
import shlex

ASSIGN = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=)(?P<value>[^\r\n]*?)"
    r"(?P<eol>\r\n|\n|\r)?$"
)
# The shell ends lines at LF only; str.splitlines() would also split inside values.
LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")


def _unquote(raw: str) -> str:
    try:
        parts = shlex.split(raw, comments=True)
    except ValueError:
        return raw
    return parts[0] if parts else ""


def get_shell_var(text: str, name: str) -> str | None:
    """The value of the last assignment of `name`, unquoted."""
    value: str | None = None
    for line in LINE.findall(text):
        match = ASSIGN.match(line)
        if match and match.group("name") == name:
            value = _unquote(match.group("value"))
    return value


def _quoted_like(old: str, value: str) -> str:
    stripped = old.strip()
    if stripped.startswith("'") or not SAFE.fullmatch(value):
        return shlex.quote(value) if not SAFE.fullmatch(value) else f"'{value}'"
    if stripped.startswith('"'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    return value


def set_shell_var(text: str, name: str, value: str) -> str:
    """`text` with every assignment of `name` set to `value`; appended (exported) if absent."""
    out: list[str] = []
    found = False
    for line in LINE.findall(text):
        match = ASSIGN.match(line)
        if match and match.group("name") == name:
            quoted = _quoted_like(match.group("value"), value)
            out.append(f"{match.group('lead')}{quoted}{match.group('eol') or ''}")
            found = True
        else:
            out.append(line)
    if found:
        return "".join(out)
    prefix = text if not text or text.endswith("\n") else text + "\n"
    quoted = value if SAFE.fullmatch(value) else shlex.quote(value)
    return f"{prefix}export {name}={quoted}\n"
