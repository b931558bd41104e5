"""Paths and small helpers shared by the unit tests of hadeploy's pure core."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` run without installing the package
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
# The two HA guides hadeploy follows, copied verbatim so a clean clone can run the tests;
# test_guides_are_verbatim_copies compares them with ../shared/guides when that exists.
GUIDES = DATA / "guides"
SHARED_GUIDES = ROOT.parent / "shared" / "guides"
HOSTS_EXAMPLE = ROOT / "hosts.example.toml"
COLOCATED = ROOT / "examples" / "colocated.toml"


def edit(text: str, *pairs: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced once; fails loudly when `old` is absent."""
    for old, new in pairs:
        assert old in text, f"test bug: {old!r} not in the example"
        text = text.replace(old, new, 1)
    return text
