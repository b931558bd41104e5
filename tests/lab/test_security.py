"""Security end to end in the lab: a sudo that asks for a password, secrets that never leave
their place, and modes that keep secret-bearing files private.

The balancers get a second login user, `ops`, with the lab's key and a sudoers entry that
requires a password (as on many production hosts). One module-scoped sequence of real runs
as `ops` — a run without the password variable, the dry-run plan, the deploy (--json), status,
verify, `render`, a re-run with a changed stats password, the rollback — is recorded, and
the tests below assert on the record:
- the run without $HADEPLOY_SUDO_PASSWORD fails naming it and changes nothing;
- the deploy works through `sudo -S`, and the password is never on a host's process list
  (`ps -eo args` sampled on every balancer throughout the deploy);
- no secret (sudo, stats and VRRP passwords) appears in any byte of stdout, stderr, the
  process lists or the whole `.hadeploy` state directory;
- haproxy.cfg and keepalived.conf are 0640 root:root after the deploy and the re-run, their
  backups are as private, no temp file is left, rollback restores modes exactly, and the
  workstation's state directory, journals, events log and lock are 0700/0600.
(The Keystone admin password of the controllers phase: test_deploy_controllers.py.)
"""

from __future__ import annotations

import re
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hadeploy.errors import HadeployError
from lab import Lab
from lab.inventory import LAB_VIP, lab_inventory_text
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    CTLS,
    FILES,
    LBS,
    events,
    hadeploy,
    http_get,
    installed,
    snapshot,
    start_backends,
    vip_holders,
    wait_for,
)

pytestmark = pytest.mark.lab

SECRET_FILES = FILES[:2]  # haproxy.cfg (stats password), keepalived.conf (VRRP password)
USER = "ops"
SUDO_ENV, STATS_ENV, VRRP_ENV = ("HADEPLOY_SUDO_PASSWORD", "HADEPLOY_STATS_PASSWORD",
                                 "HADEPLOY_VRRP_PASSWORD")
SUDO_PASSWORD = "sudo pw'9;$(id)"  # shell metacharacters: it must travel untouched
STATS_PASSWORD, STATS_PASSWORD_2 = "st4ts-Pw-9d1f", "st4ts-Pw-2e77"
VRRP_PASSWORD = "vrrp-7Kq"  # keepalived PASS auth: 8 characters at most
SECRETS = (SUDO_PASSWORD, STATS_PASSWORD, STATS_PASSWORD_2, VRRP_PASSWORD)

# As root on a balancer: `ops` logs in with the lab's key (the one `hadeploy` has) and
# must type its password for sudo. The password itself arrives on stdin (chpasswd).
ADD_USER = f"""set -eu
id {USER} >/dev/null 2>&1 || useradd --create-home --user-group --shell /bin/sh {USER}
chpasswd
install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh
install -m 600 -o {USER} -g {USER} /home/hadeploy/.ssh/authorized_keys /home/{USER}/.ssh/
printf '%s ALL=(ALL:ALL) ALL\\n' {USER} >/etc/sudoers.d/{USER}
chmod 0440 /etc/sudoers.d/{USER}
visudo -c >/dev/null
"""


def inventory_text(lab: Lab) -> str:
    """The lab inventory as `ops` with a sudo password, a stats page and VRRP auth."""
    text = lab_inventory_text(lab, user=USER)
    for old, new in (
        ("sudo = true\n", f'sudo = true\nsudo_password_env = "{SUDO_ENV}"\n'),
        ("script_interval = 1\n", f'script_interval = 1\nauth_password_env = "{VRRP_ENV}"\n'),
        ('timeout_connect = "2s"\n',
         f'timeout_connect = "2s"\n\n[haproxy.monitor]\nstats_password_env = "{STATS_ENV}"\n'),
    ):
        assert old in text, f"test bug: {old!r} is not in the lab inventory"
        text = text.replace(old, new, 1)
    return text


class ProcessLists:
    """Samples `ps -eo args` on hosts, round after round, while a run goes on."""

    def __init__(self, lab: Lab, hosts: tuple[str, ...]) -> None:
        self.lab = lab
        self.hosts = hosts
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for host in self.hosts:
                try:
                    out = self.lab.hosts[host].exec(["ps", "-eo", "args"], check=False).stdout
                except HadeployError:  # the host is briefly unreachable: sample the next
                    continue
                self.samples.append(out)

    def __enter__(self) -> ProcessLists:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@dataclass
class Record:
    """What the sequence of runs produced, for the tests to judge."""

    inventory: Path
    outputs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    before: dict[str, dict[str, str]] = field(default_factory=dict)
    after_refusal: dict[str, dict[str, str]] = field(default_factory=dict)
    packages_before: dict[str, list[bool]] = field(default_factory=dict)
    packages_after_refusal: dict[str, list[bool]] = field(default_factory=dict)
    runs_after_refusal: list[str] = field(default_factory=list)
    process_lists: list[str] = field(default_factory=list)
    modes: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    backups: dict[str, str] = field(default_factory=dict)
    after_rollback: dict[str, dict[str, str]] = field(default_factory=dict)


def _modes(lab: Lab, host: str) -> dict[str, str]:
    out = lab.hosts[host].exec(["stat", "-c", "%n %a %U %G", *SECRET_FILES]).stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def _packages(lab: Lab) -> dict[str, list[bool]]:
    return {h: [installed(lab, h, p) for p in ("haproxy", "keepalived")] for h in LBS}


# Every backup directory, any secret-bearing backup not private, any temp file left behind.
BACKUP_AUDIT = f"""
find /var/lib/hadeploy -type d ! -perm 0700 -printf 'open dir %p %m\\n'
grep -rlF -e '{STATS_PASSWORD}' -e '{VRRP_PASSWORD}' /var/lib/hadeploy/backup | while read -r f; do
    echo "secret backup $(stat -c '%a %U %G' "$f")"
done
find /etc /var/lib/hadeploy -name '.hadeploy.*' -printf 'temp file %p\\n'
"""


@pytest.fixture(scope="module")
def record(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    """Run the whole sequence once (see the module docstring) and record what it did."""
    for host in LBS + CTLS:
        lab.hosts[host].reset()
    start_backends(lab, CTLS, STAND_IN_PORTS)
    for host in LBS:
        lab.hosts[host].exec(ADD_USER, input=f"{USER}:{SUDO_PASSWORD}\n")
    # lb1 already has haproxy (and its packaged haproxy.cfg, 0644): rollback must give that
    # file back with its own mode; lb2 and lb3 start bare.
    lab.hosts["lb1"].exec("DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy "
                          "</dev/null", timeout=300)
    inventory = tmp_path_factory.mktemp("security") / "hosts.toml"
    inventory.write_text(inventory_text(lab))
    rec = Record(inventory)
    hosts = ("--hosts", str(inventory))
    env = {SUDO_ENV: SUDO_PASSWORD, STATS_ENV: STATS_PASSWORD, VRRP_ENV: VRRP_PASSWORD}
    no_sudo_env = {k: v for k, v in env.items() if k != SUDO_ENV}

    rec.before = {h: snapshot(lab, h, FILES) for h in LBS}
    rec.packages_before = _packages(lab)
    rec.outputs["no password"] = hadeploy("deploy-lb", *hosts, "--yes", "--json",
                                          env=no_sudo_env)
    rec.after_refusal = {h: snapshot(lab, h, FILES) for h in LBS}
    rec.packages_after_refusal = _packages(lab)
    runs = inventory.parent / ".hadeploy" / "runs"
    rec.runs_after_refusal = sorted(p.name for p in runs.glob("*")) if runs.exists() else []

    def step(name: str, *args: str,
             env_: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = hadeploy(*args, env=env_ or env)
        rec.outputs[name] = result
        assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"
        return result

    step("dry-run", "deploy-lb", *hosts, "--dry-run")
    with ProcessLists(lab, LBS) as sampler:
        step("deploy", "deploy-lb", *hosts, "--yes", "--json")
    rec.process_lists = sampler.samples
    rec.modes["deploy"] = {h: _modes(lab, h) for h in LBS}
    wait_for(lambda: vip_holders(lab, LBS, LAB_VIP) == ["lb1"], "lb1 to hold the VIP")
    wait_for(lambda: {http_get(f"http://{LAB_VIP}:{p}/") for p in STAND_IN_PORTS for _ in range(3)}
             == set(CTLS), "every controller to answer through the VIP")
    step("status", "status", *hosts)

    def healthy() -> bool:
        rec.outputs["verify"] = hadeploy("verify", *hosts, "--json", env=env, timeout=120)
        return rec.outputs["verify"].returncode == 0

    wait_for(healthy, "verify to report a healthy deployment", seconds=90)
    step("render", "render", *hosts, "haproxy")
    rerun = step("re-run, new stats password", "deploy-lb", *hosts, "--yes", "--json",
                 env_={**env, STATS_ENV: STATS_PASSWORD_2})
    changed = {(e["step"], e["host"]) for e in events(rerun.stdout) if e["event"] == "host-changed"}
    assert {("lb.haproxy-cfg", h) for h in LBS} <= changed, changed  # really rewritten
    rec.modes["re-run"] = {h: _modes(lab, h) for h in LBS}
    rec.backups = {h: lab.hosts[h].exec(BACKUP_AUDIT).stdout for h in LBS}
    step("rollback", "rollback", "--phase", "lb", *hosts, "--yes",
         env_={**env, STATS_ENV: STATS_PASSWORD_2})
    rec.after_rollback = {h: snapshot(lab, h, FILES) for h in LBS}
    step("status after rollback", "status", *hosts)
    yield rec


# -- the sudo password ------------------------------------------------------------------------


def test_without_the_password_variable_the_run_fails_naming_it_and_changes_nothing(
        record: Record) -> None:
    run = record.outputs["no password"]
    said = run.stdout + run.stderr
    assert run.returncode in (1, 2), said  # 1: refused at the first command, nothing run
    assert f"${SUDO_ENV}" in said and "is not set" in said, said
    assert record.after_refusal == record.before
    assert record.packages_after_refusal == record.packages_before
    assert not any(e["event"] == "host-changed" for e in events(run.stdout))
    # no journal of a run that changed something (a journal here could only hold facts)
    for name in record.runs_after_refusal:
        text = (record.inventory.parent / ".hadeploy" / "runs" / name).read_text()
        assert '"changed"' not in text, name


def test_the_deploy_works_through_a_sudo_that_asks_for_a_password(record: Record,
                                                                   lab: Lab) -> None:
    run = record.outputs["deploy"]
    kinds = [e["event"] for e in events(run.stdout)]
    assert kinds.count("host-changed") >= len(LBS) and "run-finished" in kinds
    # The sampler saw hadeploy's commands on the hosts, run by sudo -S as `ops`…
    sudo_lines = [line for sample in record.process_lists for line in sample.splitlines()
                  if line.startswith("sudo -S -k -p")]
    assert sudo_lines, f"no sudo -S command seen in {len(record.process_lists)} process lists"
    assert any("apt-get" in line for line in sudo_lines)
    # …and never the password, anywhere on any process list.
    leaks = [line for sample in record.process_lists for line in sample.splitlines()
             if SUDO_PASSWORD in line or "sudo pw" in line]
    assert leaks == []
    # `ops` really needs the password: without it sudo refuses
    probe = lab.hosts["lb2"].exec(["su", USER, "-c", "sudo -n true"], check=False)
    assert probe.returncode != 0 and "password is required" in probe.stderr


# -- secrets: every byte a full run leaves on the workstation ----------------------------------


def test_no_secret_in_any_output_state_file_or_process_list(record: Record) -> None:
    corpus: dict[str, bytes] = {}
    for name, result in record.outputs.items():
        corpus[f"{name} stdout"] = result.stdout.encode()
        corpus[f"{name} stderr"] = result.stderr.encode()
    state = record.inventory.parent / ".hadeploy"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"events.log", "lock"}
    assert len([p for p in files if p.suffix == ".json"]) >= 3  # deploy, re-run, rollback
    corpus.update({str(p): p.read_bytes() for p in files})
    corpus["process lists"] = "\n".join(record.process_lists).encode()
    hits = [(where, secret) for where, data in corpus.items() for secret in SECRETS
            if secret.encode() in data]
    assert hits == []
    # the masking really ran over text that held them (the dry-run diff of haproxy.cfg)
    assert re.search(r"^\s*\+\s*stats auth \*+$", record.outputs["dry-run"].stdout, re.M)


# -- modes ------------------------------------------------------------------------------------


def test_secret_bearing_files_stay_private_through_re_run_backups_and_rollback(
        record: Record) -> None:
    private = dict.fromkeys(SECRET_FILES, "640 root root")
    assert record.modes["deploy"] == dict.fromkeys(LBS, private)
    assert record.modes["re-run"] == dict.fromkeys(LBS, private)
    for host, audit in record.backups.items():
        lines = audit.splitlines()
        assert not [line for line in lines if not line.startswith("secret backup")], (host, audit)
        # lb*: the re-run backed up the haproxy.cfg holding the first stats password
        assert lines and all(line == "secret backup 640 root root" for line in lines), audit
    # rollback restored every file exactly, modes included: lb1's packaged haproxy.cfg is
    # back (0644, as the package made it); what did not exist is gone
    assert record.after_rollback == record.before
    assert record.before["lb1"]["/etc/haproxy/haproxy.cfg"].startswith("644 root root")


def test_workstation_state_is_owner_only(record: Record) -> None:
    state = record.inventory.parent / ".hadeploy"
    modes = {str(p.relative_to(state.parent)): stat.S_IMODE(p.stat().st_mode)
             for p in (state, *state.rglob("*"))}
    expected = {path: (0o700 if (state.parent / path).is_dir() else 0o600) for path in modes}
    assert modes == expected
