"""Shared paths and helpers for the unit tests of hadeploy's pure core."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` run without installing the package
    sys.path.insert(0, str(ROOT))

from hadeploy.inventory import Inventory, load_inventory  # noqa: E402

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


@pytest.fixture
def example() -> Inventory:
    """hosts.example.toml (guide 1: dedicated load balancers)."""
    return load_inventory(HOSTS_EXAMPLE)


@pytest.fixture
def colocated() -> Inventory:
    """examples/colocated.toml (guide 2: haproxy on the controllers)."""
    return load_inventory(COLOCATED)


@pytest.fixture
def variant(tmp_path: Path) -> Callable[..., Inventory]:
    """Load a copy of an example with textual edits: variant(COLOCATED, ("a", "b"), ...)."""
    counter = iter(range(1_000_000))

    def make(base: Path, *pairs: tuple[str, str]) -> Inventory:
        path = tmp_path / f"variant-{next(counter)}.toml"
        path.write_text(edit(base.read_text(), *pairs))
        return load_inventory(path)

    return make
