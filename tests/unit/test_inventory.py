"""The inventory: both examples load; every broken inventory in tests/data/bad is refused
with exactly the expected problems, before anything touches the network."""

from __future__ import annotations

import dataclasses
import re
import socket
import tomllib
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from hadeploy.errors import InventoryError
from hadeploy.inventory import Inventory, check_local_files, load_inventory
from hadeploy.inventory.local import local_file_problems
from hadeploy.render.haproxy import render_haproxy_cfg
from tests.unit.examples import COLOCATED, DATA, HOSTS_EXAMPLE, edit

BAD = DATA / "bad"
EXPECTED: dict[str, list[str]] = tomllib.loads(
    (BAD / "EXPECTED.toml").read_text(encoding="utf-8"))["files"]
BAD_FILES = sorted(p.name for p in BAD.glob("*.toml") if p.name != "EXPECTED.toml")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.path == str(path)
    return caught.value.problems


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

def test_corpus_is_complete() -> None:
    assert len(BAD_FILES) >= 40
    assert sorted(EXPECTED) == BAD_FILES, "every bad file needs its expected lines, and back"


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_inventory_is_refused_with_exact_problems(name: str) -> None:
    assert problems_of(BAD / name) == EXPECTED[name]


TABLES = (r"(deployment|ssh|vip|keepalived|haproxy|haproxy\.monitor|haproxy\.overrides\.[\w-]+"
          r"|services|openstack|tls)")
NODE = r"(lb|controller)"
WHERE = re.compile(
    rf"\[{TABLES}\]|{TABLES}(\.\w+)?"               # [vip], vip.address
    rf"|{NODE}|{NODE} #\d+ \(.*\)\.\w+"             # lb, lb #1 (name).priority
    rf"|{NODE} [\w.-]+\.\w+(, {NODE} [\w.-]+\.\w+)*"  # lb a.priority, lb b.priority
    r"|name|address|openstack\.rc_files #\d+(\.\w+)?"
)


@pytest.mark.parametrize("name", BAD_FILES)
def test_each_problem_says_where(name: str) -> None:
    """Each message starts with the key (or table) it is about, or is about the whole file."""
    file_level = ("not valid TOML: ", "not UTF-8 text ", "the file is empty; ")
    for line in EXPECTED[name]:
        if line.startswith(file_level):
            continue
        where, _, what = line.partition(": ")
        assert what, line
        if what.startswith("unknown table; known tables are "):
            continue
        assert WHERE.fullmatch(where), f"{where!r} does not name a key: {line}"


def test_malformed_toml_gives_line_and_column() -> None:
    for name in BAD_FILES:
        if name.startswith("malformed_toml"):
            (line,) = EXPECTED[name]
            assert re.search(r"\(at line \d+, column \d+\)", line), line


def test_secrets_written_in_the_file_are_never_echoed() -> None:
    for name in ("stats_password_literal.toml", "ssh_password_literal.toml",
                 "keepalived_auth_pass_literal.toml", "env_name_lowercase.toml"):
        text = (BAD / name).read_text()
        secret = re.search(r'(?:password|auth_pass|_env) = "([^"]+)"', text.split("\n", 1)[1])
        assert secret, name
        error = "\n".join(problems_of(BAD / name))
        assert secret.group(1) not in error, name


def test_several_problems_reported_at_once() -> None:
    schema = problems_of(BAD / "several_problems.toml")
    assert len(schema) == 4
    assert {p.split(":")[0] for p in schema} == {"haproxi", "ssh.port", "vip.prefix",
                                                 "lb #2 (lb 2).name"}
    rules = problems_of(BAD / "several_rule_problems.toml")
    assert [p.split(":")[0] for p in rules] == [
        "lb mesa-lb-02.priority, lb mesa-lb-03.priority", "keepalived.script_weight",
        "vip.address"]


def test_non_utf8_written_here(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[deployment]\nname = "a"\n# caf\xe9\n')
    assert problems_of(path) == [
        "not UTF-8 text (invalid byte at line 3); save the file as UTF-8"]
    assert (BAD / "non_utf8.toml").read_bytes().count(b"\xe9") == 1  # stays binary in git


def test_too_large_and_unreadable(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")
    assert problems_of(big) == [f"{1024 * 1024 + 3} bytes is too large for an inventory (1 MiB)"]
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    assert problems_of(directory) == ["cannot be read: Is a directory"]


def test_missing_file_hint(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "hosts.toml") == [
        "file not found; copy hosts.example.toml to hosts.toml and edit it, or pass --hosts "
        "FILE (or set HADEPLOY_HOSTS)"
    ]


def test_error_text_lists_every_problem() -> None:
    path = BAD / "several_problems.toml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 4 problems found, nothing was run"
    assert lines[1:] == [f"  - {p}" for p in EXPECTED["several_problems.toml"]]


def test_validation_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)
    for name in BAD_FILES:
        with pytest.raises(InventoryError):
            load_inventory(BAD / name)
    load_inventory(HOSTS_EXAMPLE)
    load_inventory(COLOCATED)


# ---------------------------------------------------------------------------------------------
# Local files the inventory names: checked before connecting, not at load
# ---------------------------------------------------------------------------------------------

def with_ssh(variant: Callable[..., Inventory], policy: str = "strict",
             **files: Path) -> Inventory:
    keys = "".join(f'{key} = "{path}"\n' for key, path in files.items())
    return variant(HOSTS_EXAMPLE, ('known_hosts = "~/.ssh/known_hosts"\n', keys),
                   ('host_key_policy = "strict"', f'host_key_policy = "{policy}"'))


def test_local_files_that_exist_are_fine(variant: Callable[..., Inventory],
                                         tmp_path: Path) -> None:
    for name in ("key", "known_hosts", "ssh_config"):
        (tmp_path / name).write_text("x\n")
    inv = with_ssh(variant, identity=tmp_path / "key", known_hosts=tmp_path / "known_hosts",
                   config=tmp_path / "ssh_config")
    assert local_file_problems(inv) == []
    check_local_files(inv)


def test_missing_local_files_name_the_file_the_key_and_the_fix(
        variant: Callable[..., Inventory], tmp_path: Path) -> None:
    key, known, config = tmp_path / "key", tmp_path / "known_hosts", tmp_path / "ssh_config"
    inv = with_ssh(variant, identity=key, known_hosts=known, config=config)  # loads fine
    assert local_file_problems(inv) == [
        f"ssh.identity: the private key {key} does not exist; point ssh.identity at the key "
        "whose public half is in the user's ~/.ssh/authorized_keys on the hosts",
        f"ssh.known_hosts: {known} does not exist, so no host key can be trusted; add the "
        f"hosts' keys to it after checking their fingerprints (ssh-keyscan HOST >> {known}), "
        'or set ssh.host_key_policy = "accept-new" to record keys on first use',
        f"ssh.config: the ssh_config file {config} does not exist; fix the path or remove "
        "ssh.config",
    ]
    with pytest.raises(InventoryError) as caught:
        check_local_files(inv)
    assert caught.value.path == inv.path
    assert str(caught.value).startswith(f"{inv.path}: 3 problems found, nothing was run\n")


def test_accept_new_creates_a_missing_known_hosts(variant: Callable[..., Inventory],
                                                  tmp_path: Path) -> None:
    inv = with_ssh(variant, "accept-new", known_hosts=tmp_path / "new" / "known_hosts")
    assert local_file_problems(inv) == []


def test_unreadable_local_files(variant: Callable[..., Inventory], tmp_path: Path) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()
    inv = with_ssh(variant, "accept-new", identity=folder, known_hosts=folder)
    assert local_file_problems(inv) == [
        f"ssh.identity: the private key {folder} cannot be read (Is a directory); point "
        "ssh.identity at the key whose public half is in the user's ~/.ssh/authorized_keys "
        "on the hosts",
        f"ssh.known_hosts: {folder} cannot be read (Is a directory), so no host key can be "
        "trusted; fix its permissions or point ssh.known_hosts at a readable file",
    ]


def test_home_relative_paths_are_expanded(variant: Callable[..., Inventory], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    inv = with_ssh(variant, identity=Path("~/id_ed25519"))
    problems = local_file_problems(inv)
    assert problems[0].startswith(f"ssh.identity: the private key {tmp_path}/id_ed25519 does ")
    assert problems[1].startswith(f"ssh.known_hosts: {tmp_path}/.ssh/known_hosts does not ")


# ---------------------------------------------------------------------------------------------
# The examples
# ---------------------------------------------------------------------------------------------

def test_hosts_example_is_guide1(example: Inventory) -> None:
    assert (example.name, example.release, example.platform, example.topology) == (
        "mesa", "grizzly", "el6", "dedicated")
    assert example.vip.address == IPv4Address("10.15.85.31")
    assert (example.vip.interface, example.vip.virtual_router_id, example.vip.advert_int) == (
        "eth0", 47, 3)
    assert [str(c.address) for c in example.controllers] == [
        "10.15.85.141", "10.15.85.142", "10.15.85.143"]
    assert example.original.name == "mesa-virt-01"
    assert example.original.address == IPv4Address("10.15.85.141")
    assert [c.name for c in example.new_controllers] == ["mesa-virt-02", "mesa-virt-03"]
    assert len(example.lbs) == 3 and example.balancers == example.lbs
    assert sorted(n.priority or 0 for n in example.lbs) == [101, 102, 103]
    assert example.keepalived.script_weight == 10
    assert example.services == ("keystone", "quantum", "glance", "nova", "cinder")
    assert example.haproxy.monitor is None
    assert example.family == "el"
    assert example.ssh.sudo is False and example.ssh.host_key_policy == "strict"
    assert [(r.host, r.path) for r in example.openstack.rc_files] == [
        ("mesa-virt-01", "/root/keystone_adminrc")]


def test_colocated_is_guide2(colocated: Inventory) -> None:
    assert (colocated.release, colocated.topology, colocated.platform) == (
        "modern", "colocated", "el7")
    assert colocated.lbs == () and colocated.balancers == colocated.controllers
    assert [str(c.api_bind) for c in colocated.controllers] == [
        "192.168.1.221", "192.168.1.222", "192.168.1.223"]
    assert colocated.vip.address == IPv4Address("192.168.1.220")
    monitor = colocated.haproxy.monitor
    assert monitor is not None
    assert (monitor.port, monitor.stats_user, monitor.stats_password_env) == (
        9300, "root", "HADEPLOY_STATS_PASSWORD")
    assert colocated.haproxy.mode == "tcp" and colocated.haproxy.check_inter == "1s"
    assert len(colocated.services) == 11
    assert colocated.nodes == colocated.controllers


def test_inventory_is_frozen(example: Inventory) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.lbs[0].priority = 1  # type: ignore[misc]


def test_nodes_and_lookup(example: Inventory) -> None:
    assert [n.name for n in example.nodes] == [
        "mesa-lb-01", "mesa-lb-02", "mesa-lb-03", "mesa-virt-01", "mesa-virt-02", "mesa-virt-03"]
    assert example.node("mesa-lb-02").priority == 102
    assert example.node("mesa-virt-01").connect_to == "10.15.85.141"
    with pytest.raises(KeyError):
        example.node("nope")


def test_secret_names_and_values(colocated: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    assert colocated.secret_env_names() == ("HADEPLOY_STATS_PASSWORD",)
    monkeypatch.delenv("HADEPLOY_STATS_PASSWORD", raising=False)
    assert colocated.secret_values() == ()
    monkeypatch.setenv("HADEPLOY_STATS_PASSWORD", "pw")
    assert colocated.secret_values() == ("pw",)


def test_optional_tables_take_defaults(variant: Callable[..., Inventory]) -> None:
    inv = variant(HOSTS_EXAMPLE, (
        '[ssh]\nuser = "root"\nport = 22\nknown_hosts = "~/.ssh/known_hosts"\n'
        'host_key_policy = "strict"  # refuse hosts whose key is not in known_hosts\n', ""),
        ('platform = "el6"', '# platform defaults to auto'))
    assert inv.ssh.user == "root" and inv.ssh.port == 22 and inv.ssh.connect_timeout == 10.0
    assert inv.platform == "auto" and inv.family is None


def test_non_root_user_gets_sudo_by_default(variant: Callable[..., Inventory]) -> None:
    inv = variant(HOSTS_EXAMPLE, ('user = "root"', 'user = "deploy"'))
    assert inv.ssh.sudo is True


def test_weight_just_above_spread_is_fine(variant: Callable[..., Inventory]) -> None:
    inv = variant(HOSTS_EXAMPLE, ("script_weight = 10 ", "script_weight = 3 "))
    assert inv.keepalived.script_weight == 3


@pytest.mark.parametrize("value", ['"24d"', '"2147483647"', '"100us"', '"1ms"'])
def test_haproxy_times_at_the_limits(variant: Callable[..., Inventory], value: str) -> None:
    inv = variant(HOSTS_EXAMPLE, ('check_inter = "10s"', f"check_inter = {value}"))
    assert inv.haproxy.check_inter == value.strip('"')


def test_a_server_changing_state_is_checked_as_often_as_the_inventory_says(
        variant: Callable[..., Inventory], tmp_path: Path) -> None:
    inv = variant(HOSTS_EXAMPLE, ('check_inter = "10s"',
                                  'check_inter = "10s"\ncheck_fastinter = "200ms"\n'
                                  'check_downinter = "2s"'))
    assert "    default-server fastinter 200ms downinter 2s\n" in render_haproxy_cfg(inv)
    broken = tmp_path / "hosts.toml"
    broken.write_text(HOSTS_EXAMPLE.read_text().replace(
        'check_inter = "10s"', 'check_inter = "10s"\ncheck_fastinter = "fast"'))
    with pytest.raises(InventoryError, match=r"haproxy\.check_fastinter"):
        load_inventory(broken)


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    a = load_inventory(HOSTS_EXAMPLE)
    copy = tmp_path / "copy.toml"
    copy.write_text(HOSTS_EXAMPLE.read_text())
    assert load_inventory(copy).fingerprint == a.fingerprint
    copy.write_text(edit(HOSTS_EXAMPLE.read_text(), ("maxconn = 10000", "maxconn = 10001")))
    assert load_inventory(copy).fingerprint != a.fingerprint
