"""Fixtures for the unit tests of hadeploy's pure core: the two examples, and variants."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from coretest import COLOCATED, HOSTS_EXAMPLE, edit

from hadeploy.inventory import Inventory, load_inventory


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
