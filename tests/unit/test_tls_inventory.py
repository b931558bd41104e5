"""TLS on the public VIP: the inventory's keys and rules, and the corpus of bad certificate
and key files (tests/data/bad_tls), each refused with its exact message before anything
connects."""

from __future__ import annotations

import shutil
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hadeploy.inventory import Inventory, load_inventory
from hadeploy.inventory.tls import check_tls_files
from tests.unit.examples import DATA, HOSTS_EXAMPLE, edit

CORPUS = DATA / "bad_tls"
CASES: dict[str, dict[str, Any]] = tomllib.loads(
    (CORPUS / "EXPECTED.toml").read_text(encoding="utf-8"))["cases"]
PUBLIC_VIP = '[vip]\naddress = "10.15.85.31"\n'


def tls_inventory(directory: Path, certificate: str, key: str, name: str | None = None,
                  extra: str = "") -> Path:
    """hosts.example.toml with a public VIP and [tls] naming files in `directory`."""
    text = edit(HOSTS_EXAMPLE.read_text(),
                (PUBLIC_VIP, PUBLIC_VIP + 'public_address = "10.15.85.40"\n'))
    text += f'\n[tls]\ncertificate = "{directory / certificate}"\nkey = "{directory / key}"\n'
    if name:
        text += f'name = "{name}"\n'
    path = directory / "hosts.toml"
    path.write_text(text + extra)
    return path


def corpus_case(tmp_path: Path, case: str) -> Inventory:
    """The case's files copied to `tmp_path` with its key mode, and its inventory loaded."""
    spec = CASES[case]
    for item in CORPUS.iterdir():
        shutil.copy(item, tmp_path / item.name)
        (tmp_path / item.name).chmod(0o600 if item.suffix == ".key" else 0o644)
    if (tmp_path / spec["key"]).exists():
        (tmp_path / spec["key"]).chmod(int(spec.get("key_mode", "0600"), 8))
    return load_inventory(tls_inventory(tmp_path, spec["certificate"], spec["key"],
                                        spec.get("name")))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a TLS check tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_corpus_case_has_exactly_its_problems(case: str, tmp_path: Path,
                                              no_network: None) -> None:
    inv = corpus_case(tmp_path, case)
    expected = [p.replace("{dir}", str(tmp_path)) for p in CASES[case]["problems"]]
    assert check_tls_files(inv)[1] == expected
