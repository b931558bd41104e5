"""Platform profiles: how a host installs packages and manages services.

A profile is decided per host: from the inventory (`el6`, `el7`…, `debian`), or from
/etc/os-release when the inventory says `auto`. The init system is read from the host,
because a file named systemctl proves nothing: `/run/systemd/system` exists only when
systemd is actually running (what sd_booted() checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hadeploy.catalog import Family
from hadeploy.quoting import q, sh

Init = Literal["systemd", "sysv"]
Manager = Literal["apt-get", "yum", "dnf"]

# One round trip: os-release ids and whether systemd runs. `.` of a missing file kills a
# POSIX sh outright, and EL6 has no os-release: its version comes from redhat-release.
DETECT_PROBE = (
    "if [ -r /etc/os-release ]; then . /etc/os-release; "
    "elif [ -r /etc/redhat-release ]; then ID=rhel; "
    "VERSION_ID=$(sed -n 's/^[^0-9]*\\([0-9][0-9.]*\\).*/\\1/p' /etc/redhat-release); fi; "
    'printf "id=%s\\nlike=%s\\nversion=%s\\n" "$ID" "$ID_LIKE" "$VERSION_ID"; '
    "if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=sysv; fi"
)


@dataclass(frozen=True)
class Profile:
    """How one host is managed."""

    name: str
    family: Family
    manager: Manager
    init: Init

    def installed_probe(self, packages: tuple[str, ...]) -> str:
        """Print one installed package name per line (of `packages`)."""
        if self.family == "debian":
            return (f"dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' "
                    f"{sh(*packages)} 2>/dev/null | awk '$2 ~ /^ii/ {{print $1}}'; true")
        return f"rpm -q --qf '%{{NAME}}\\n' {sh(*packages)} 2>/dev/null | grep -v ' ' ; true"

    def all_installed_probe(self) -> str:
        """Print every installed package name, one per line, sorted. On Debian: present in
        any state but not-installed and config-files only (a package a dead run's dpkg left
        half-done, or with triggers pending, is there)."""
        if self.family == "debian":
            return ("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' 2>/dev/null "
                    "| awk '$2 !~ /^.[nc]/ {print $1}' | sort")
        return "rpm -qa --qf '%{NAME}\\n' | sort"

    def install(self, packages: tuple[str, ...]) -> str:
        """Install `packages` non-interactively."""
        if self.manager == "apt-get":
            # apt waits (bounded) for a lock taken by another run since hadeploy last looked.
            return ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                    f"-o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confold "
                    f"{sh(*packages)}")
        return f"{self.manager} install -y -q {sh(*packages)}"

    def remove_prefix(self) -> str:
        """The remove command without package names (rollback appends what is present)."""
        if self.manager == "apt-get":
            return "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q -o DPkg::Lock::Timeout=60"
        return f"{self.manager} remove -y -q"

    def remove(self, packages: tuple[str, ...]) -> str:
        """Remove `packages` and their configuration (the state before they were installed)."""
        return f"{self.remove_prefix()} {sh(*packages)}"

    def enable(self, service: str) -> str:
        """Start `service` at boot."""
        if self.init == "systemd":
            return sh("systemctl", "enable", service)
        if self.family == "el":
            return sh("chkconfig", service, "on")
        # `defaults` creates missing links; `enable` turns the stop links `disable` left
        # (a retired controller's, say) back into start links
        return (sh("update-rc.d", service, "defaults") + " >/dev/null && "
                + sh("update-rc.d", service, "enable") + " >/dev/null")

    def disable(self, service: str) -> str:
        """Do not start `service` at boot."""
        if self.init == "systemd":
            return sh("systemctl", "disable", service)
        if self.family == "el":
            return sh("chkconfig", service, "off")
        return sh("update-rc.d", service, "disable") + " >/dev/null"

    def enabled_probe(self, service: str) -> str:
        """Print `enabled` or `disabled`."""
        if self.init == "systemd":
            test = sh("systemctl", "is-enabled", "--quiet", service)
        elif self.family == "el":
            test = f"chkconfig --list {q(service)} 2>/dev/null | grep -q '3:on'"
        else:
            # the glob in the shell itself (no `ls` process): an unmatched glob stays as it
            # is written, a name that does not exist
            test = (f"for hadeploy_rc in /etc/rc2.d/S??{q(service)}; do break; done; "
                    '[ -e "$hadeploy_rc" ]')
        return f"if {test}; then echo enabled; else echo disabled; fi"

    def action(self, service: str, verb: str) -> str:
        """start, stop, restart or reload `service`."""
        if self.init == "systemd":
            return sh("systemctl", verb, service)
        return sh("service", service, verb)


def running_probe(service: str, pidfiles: tuple[str, ...], init: Init) -> str:
    """Print `running` or `stopped`, reading pid files and /proc rather than init scripts.

    Debian's keepalived script has no `status` action and init scripts report success for
    daemons that died, so the pid file and /proc are the only honest witnesses.
    """
    if not pidfiles:
        if init == "systemd":
            test = sh("systemctl", "is-active", "--quiet", service)
        else:
            test = sh("service", service, "status") + " >/dev/null 2>&1"
        return f"if {test}; then echo running; else echo stopped; fi"
    files = " ".join(q(p) for p in pidfiles)
    return (
        f"r=stopped; for f in {files}; do [ -r \"$f\" ] || continue; "
        "for p in $(cat \"$f\"); do [ -r /proc/$p/stat ] || continue; "
        "read -r _ n s _ < /proc/$p/stat; "
        "[ \"$s\" != Z ] && r=running; done; done; echo $r"
    )


def profile_for(platform: str, init: Init | None = None) -> Profile:
    """The profile of an explicit inventory platform (not `auto`)."""
    if platform == "el6":
        return Profile("el6", "el", "yum", "sysv")
    if platform == "el7":
        return Profile("el7", "el", "yum", init or "systemd")
    if platform in ("el8", "el9"):
        return Profile(platform, "el", "dnf", init or "systemd")
    if platform == "debian":
        return Profile("debian", "debian", "apt-get", init or "systemd")
    raise ValueError(f"no profile for platform {platform!r}")


def parse_detect(output: str) -> tuple[str, Init]:
    """Platform name and init system from DETECT_PROBE's output."""
    values = dict(
        line.split("=", 1) for line in output.splitlines() if "=" in line
    )
    ident, like = values.get("id", ""), values.get("like", "")
    version = values.get("version", "").split(".")[0]
    init: Init = "systemd" if values.get("init") == "systemd" else "sysv"
    if ident == "debian" or "debian" in like.split():
        return "debian", init
    if ident in ("rhel", "centos", "rocky", "almalinux", "ol", "fedora") or "rhel" in like:
        if version in ("6", "7", "8", "9"):
            return f"el{version}", init
        return "el9", init
    return "", init
