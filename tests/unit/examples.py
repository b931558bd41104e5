"""Where the unit tests find the repository's examples and test data, and `edit` to derive
an inventory variant from an example's text."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
# The two HA guides hadeploy follows, copied verbatim so a clean clone can run the tests;
# test_guides_are_verbatim_copies compares them with ../shared/guides when that exists.
GUIDES = DATA / "guides"
SHARED_GUIDES = ROOT.parent / "shared" / "guides"
HOSTS_EXAMPLE = ROOT / "hosts.example.toml"
COLOCATED = DATA / "guide2-rhos6.toml"  # guide 2 as written (EL7); examples/ has Debian


def edit(text: str, *pairs: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced once; fails loudly when `old` is absent."""
    for old, new in pairs:
        assert old in text, f"test bug: {old!r} not in the example"
        text = text.replace(old, new, 1)
    return text
