"""Fixtures for the unit tests of hadeploy's pure core: the two examples, variants of them,
and the derived inventories of phase `controllers`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hadeploy.inventory import Inventory, load_inventory
from hadeploy.ops import packages
from tests.unit.controller_inventories import Inventories, derived_inventory
from tests.unit.examples import COLOCATED, HOSTS_EXAMPLE, edit
from tests.unit.haproxy_cli import stand_in_cli


@pytest.fixture(autouse=True)
def package_windows(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install scripts that run on this machine keep their windows (and read dpkg's log) in
    a temporary directory, never in the machine's /var/lib/hadeploy."""
    directory = tmp_path_factory.mktemp("windows")
    monkeypatch.setattr(packages, "WINDOWS", str(directory / "runs"))
    monkeypatch.setattr(packages, "DPKG_LOGS", str(directory / "dpkg.log"))
    return directory


@pytest.fixture
def example() -> Inventory:
    """hosts.example.toml (guide 1: dedicated load balancers)."""
    return load_inventory(HOSTS_EXAMPLE)


@pytest.fixture
def colocated() -> Inventory:
    """Guide 2's inventory as written (tests/data/guide2-rhos6.toml: haproxy on the controllers)."""
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


@pytest.fixture(scope="module")
def inventories(tmp_path_factory: pytest.TempPathFactory) -> Inventories:
    """inventories(release, platform, topology): an example rewritten to that shape, loaded."""
    directory = str(tmp_path_factory.mktemp("inventories"))

    def get(release: str, platform: str, topology: str) -> Inventory:
        return derived_inventory(release, platform, topology, directory)

    return get


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose PATH has a stand-in socat for haproxy's CLI (haproxy_cli)."""
    yield from stand_in_cli(tmp_path)
