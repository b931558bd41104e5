"""Quoting: whatever string hadeploy puts on a command line arrives in the program unchanged.

Checked with the shell the hosts run commands with (/bin/sh, dash on Debian; the same
binary the lab hosts use), on arbitrary text: quotes, `$(...)`, backticks, globs, newlines,
semicolons, non-ASCII.
"""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from hadeploy.quoting import q, sh
from tests.unit.strategies import encodable_text

# Any text a TOML string can hold except NUL (which no argv can carry).
TEXT = encodable_text(exclude="\x00", max_size=40)


def _argv_seen_by_the_program(command_line: str) -> list[str]:
    """Run `command_line` in /bin/sh with a program that prints its argv NUL-separated."""
    script = f"printf '%s\\0' {command_line}"
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, check=True).stdout
    return out.decode("utf-8", "surrogateescape").split("\0")[:-1]


@settings(max_examples=300, deadline=None)
@given(value=TEXT)
def test_one_quoted_word_arrives_unchanged(value: str) -> None:
    assert _argv_seen_by_the_program(q(value)) == [value]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(TEXT, min_size=1, max_size=5))
def test_a_quoted_command_line_keeps_every_argument_apart_and_unchanged(
        values: list[str]) -> None:
    assert _argv_seen_by_the_program(sh(*values)) == values


def test_hostile_names_from_the_bad_corpus_stay_inert() -> None:
    for value in ("lb1; rm -rf /", "$(reboot)", "`reboot`", "a\nb", "'\"'", "*", "~root"):
        assert _argv_seen_by_the_program(q(value)) == [value]
