"""Platform profiles: detection from os-release, and the commands each platform uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hadeploy.platforms import DETECT_PROBE, Profile, parse_detect, profile_for, running_probe


def detect_output(**values: str) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.mark.parametrize(("output", "expected"), [
    (detect_output(id="debian", like="", version="12", init="systemd"), ("debian", "systemd")),
    (detect_output(id="ubuntu", like="debian", version="22.04", init="systemd"),
     ("debian", "systemd")),
    (detect_output(id="debian", like="", version="7", init="sysv"), ("debian", "sysv")),
    (detect_output(id="centos", like="rhel fedora", version="6.10", init="sysv"),
     ("el6", "sysv")),
    (detect_output(id="rhel", like="fedora", version="7.9", init="systemd"), ("el7", "systemd")),
    (detect_output(id="rocky", like="rhel centos fedora", version="8.9", init="systemd"),
     ("el8", "systemd")),
    (detect_output(id="almalinux", like="rhel centos fedora", version="9.3", init="systemd"),
     ("el9", "systemd")),
    (detect_output(id="ol", like="fedora", version="9", init="systemd"), ("el9", "systemd")),
    (detect_output(id="alpine", like="", version="3.19", init="sysv"), ("", "sysv")),
    ("", ("", "sysv")),
    ("garbage without equals signs\n", ("", "sysv")),
])
def test_parse_detect(output: str, expected: tuple[str, str]) -> None:
    assert parse_detect(output) == expected


def test_detect_probe_with_real_sh(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('ID=rocky\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n')
    redhat = tmp_path / "redhat-release"
    systemd = tmp_path / "run-systemd-system"
    script = (DETECT_PROBE.replace("/etc/os-release", str(release))
              .replace("/etc/redhat-release", str(redhat))
              .replace("/run/systemd/system", str(systemd)))
    assert script != DETECT_PROBE

    def run() -> tuple[str, str]:
        out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                             check=True).stdout
        return parse_detect(out)

    assert run() == ("el9", "sysv")
    systemd.mkdir()
    assert run() == ("el9", "systemd")
    release.unlink()  # no os-release at all: nothing detected, no error
    assert run() == ("", "systemd")
    redhat.write_text("CentOS release 6.10 (Final)\n")  # EL6 has no os-release
    systemd.rmdir()
    assert run() == ("el6", "sysv")
    redhat.write_text("Red Hat Enterprise Linux Server release 7.9 (Maipo)\n")
    assert run() == ("el7", "sysv")


@pytest.mark.parametrize(("platform", "init", "expected"), [
    ("el6", None, Profile("el6", "el", "yum", "sysv")),
    ("el6", "systemd", Profile("el6", "el", "yum", "sysv")),  # el6 has no systemd
    ("el7", None, Profile("el7", "el", "yum", "systemd")),
    ("el8", None, Profile("el8", "el", "dnf", "systemd")),
    ("el9", "sysv", Profile("el9", "el", "dnf", "sysv")),
    ("debian", None, Profile("debian", "debian", "apt-get", "systemd")),
    ("debian", "sysv", Profile("debian", "debian", "apt-get", "sysv")),
])
def test_profile_for(platform: str, init: str | None, expected: Profile) -> None:
    assert profile_for(platform, init) == expected  # type: ignore[arg-type]


def test_profile_for_an_unknown_platform() -> None:
    with pytest.raises(ValueError, match="no profile for platform 'auto'"):
        profile_for("auto")


def test_debian_systemd_commands() -> None:
    p = profile_for("debian")
    assert p.install(("haproxy", "keepalived")) == (
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
        "-o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confold haproxy keepalived")
    assert p.remove(("haproxy",)) == (
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=60 haproxy")
    assert p.enable("haproxy") == "systemctl enable haproxy"
    assert p.disable("haproxy") == "systemctl disable haproxy"
    assert p.action("haproxy", "restart") == "systemctl restart haproxy"
    assert p.enabled_probe("haproxy") == (
        "if systemctl is-enabled --quiet haproxy; then echo enabled; else echo disabled; fi")


def test_debian_sysv_commands() -> None:
    p = profile_for("debian", "sysv")
    assert p.enable("keepalived") == ("update-rc.d keepalived defaults >/dev/null && "
                                      "update-rc.d keepalived enable >/dev/null")
    assert p.disable("keepalived") == "update-rc.d keepalived disable >/dev/null"
    assert p.action("keepalived", "start") == "service keepalived start"
    assert "/etc/rc2.d/S??keepalived" in p.enabled_probe("keepalived")


@pytest.mark.parametrize(("links", "said"), [((), "disabled"), (("K01keepalived",), "disabled"),
                                             (("S01keepalived-extra",), "disabled"),
                                             (("K01keepalived", "S01keepalived"), "enabled"),
                                             (("S01keepalived", "S02keepalived"), "enabled")])
def test_sysv_enabled_probe_run_for_real(tmp_path: Path, links: tuple[str, ...],
                                         said: str) -> None:
    """Enabled at boot: a start link in runlevel 2 (the shell's own glob, no `ls`)."""
    for link in links:
        (tmp_path / link).symlink_to("/etc/init.d/keepalived")
    probe = profile_for("debian", "sysv").enabled_probe("keepalived")
    run = subprocess.run(["sh", "-c", probe.replace("/etc/rc2.d", str(tmp_path))],
                         capture_output=True, text=True, timeout=30)
    assert run.stdout == f"{said}\n"


def test_el_commands() -> None:
    el6, el9 = profile_for("el6"), profile_for("el9")
    assert el6.install(("haproxy",)) == "yum install -y -q haproxy"
    assert el9.install(("haproxy",)) == "dnf install -y -q haproxy"
    assert el6.remove(("haproxy",)) == "yum remove -y -q haproxy"
    assert el6.enable("haproxy") == "chkconfig haproxy on"
    assert el6.disable("haproxy") == "chkconfig haproxy off"
    assert el6.action("haproxy", "reload") == "service haproxy reload"
    assert el9.enable("haproxy") == "systemctl enable haproxy"
    assert "rpm -q" in el6.installed_probe(("haproxy",))
    assert el6.all_installed_probe() == "rpm -qa --qf '%{NAME}\\n' | sort"


def test_names_reaching_the_shell_are_quoted() -> None:
    p = profile_for("debian")
    evil = "x; rm -rf /"
    assert p.enable(evil) == "systemctl enable 'x; rm -rf /'"
    assert "'x; rm -rf /'" in p.installed_probe((evil,))
    assert "'x; rm -rf /'" in running_probe(evil, (), "sysv")
    assert "'/run/a b.pid'" in running_probe("svc", ("/run/a b.pid",), "systemd")


def test_running_probe_without_pid_files_asks_the_init_system() -> None:
    assert running_probe("haproxy", (), "systemd") == (
        "if systemctl is-active --quiet haproxy; then echo running; else echo stopped; fi")
    assert "service haproxy status" in running_probe("haproxy", (), "sysv")


def test_installed_probe_never_fails_on_missing_packages() -> None:
    # `; true` so that a host without some of the packages still answers its probe
    for platform in ("debian", "el7"):
        assert profile_for(platform).installed_probe(("a", "b")).endswith("; true")
