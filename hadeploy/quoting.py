"""Build shell text from arguments: every argument that reaches a shell goes through here."""

from __future__ import annotations

import shlex


def sh(*argv: str) -> str:
    """One shell command line with every argument quoted."""
    return " ".join(shlex.quote(a) for a in argv)


def q(arg: str) -> str:
    """One quoted shell word."""
    return shlex.quote(arg)
