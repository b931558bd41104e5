"""Packages, services, daemons, kernel parameters and the platform of a host.

Whether a daemon runs is read by `platforms.running_probe` (pid files and /proc, since init
scripts lie); the deploy's services and `verify` both read it through `daemon_state` or
`service_state` here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy import framing
from hadeploy.facts import Fact, Probe, stripped
from hadeploy.platforms import DETECT_PROBE, Init, Profile, parse_detect, running_probe
from hadeploy.quoting import q, sh

# A `creates` path the packages' probe found absent is printed on a line of its own.
ABSENT = "absent"
# A process holding Debian's package manager lock: `@@pm-lock PID COMMAND LINE`.
PM_LOCK = "pm-lock"
# The locks apt-get, dpkg and unattended-upgrades take while they change packages.
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")
# A shell function printing `PID COMMAND LINE` for every process that holds a lock on one of
# its arguments. dpkg's are fcntl locks, listed in /proc/locks by inode; a holder is named
# only if it also has the file open, so a lock on another file system's file with the same
# inode number never counts. The command line is cut to one line of at most 200 characters.
PM_LOCK_HOLDERS = r"""hadeploy_pm_holders() {
  for f in "$@"; do
    i=$(stat -c %i "$f" 2>/dev/null) || continue
    for p in $(awk -v i="$i" '!/->/ { n = split($6, d, ":"); if (d[n] == i) print $5 }' \
               /proc/locks 2>/dev/null); do
      for fd in /proc/"$p"/fd/*; do
        if [ "$(readlink "$fd" 2>/dev/null)" = "$f" ]; then
          echo "$p $(tr '\0\n' '  ' </proc/"$p"/cmdline 2>/dev/null | cut -c 1-200)"
          break
        fi
      done
    done
  done | sort -u -n
}
"""


@dataclass(frozen=True)
class PackagesSeen:
    """Which of the asked packages are installed, which asked paths do not exist, and which
    processes hold the package manager's lock (`PID COMMAND LINE`; Debian only)."""

    installed: frozenset[str]
    absent: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()


def packages_installed(profile: Profile, packages: tuple[str, ...],
                       paths: tuple[str, ...] = ()) -> Fact[PackagesSeen]:
    """Which of `packages` are installed, which of `paths` are absent, and who holds the
    package manager's lock on Debian (a run whose workstation died leaves its apt-get
    running), in one round trip."""
    absent = "".join(f"; [ -e {q(p)} ] || echo {framing.tag(ABSENT)} {q(p)}" for p in paths)
    busy = (f"\n{PM_LOCK_HOLDERS}hadeploy_pm_holders {sh(*DPKG_LOCKS)} "
            f"| sed 's/^/{framing.tag(PM_LOCK)} /'" if profile.family == "debian" else "")

    def parse(probe: Probe) -> PackagesSeen:
        said = framing.tagged_words(ABSENT, probe.stdout)
        holders = tuple(" ".join(words) for words in framing.tagged_words(PM_LOCK, probe.stdout))
        plain = framing.untagged_lines(PM_LOCK, "\n".join(
            framing.untagged_lines(ABSENT, probe.stdout)))
        return PackagesSeen(frozenset(line.strip() for line in plain if line.strip()),
                            tuple(p for p in paths if p.split() in said), holders)

    return Fact(profile.installed_probe(packages) + absent + busy, parse)


def daemon_state(service: str, pidfiles: tuple[str, ...], init: Init) -> Fact[str]:
    """`running` or `stopped` (empty when the probe printed nothing), see `running_probe`."""
    return Fact(running_probe(service, pidfiles, init), stripped)


@dataclass(frozen=True)
class ServiceState:
    """Whether a service starts at boot and whether it runs now."""

    enabled: bool
    running: bool


def _service_state(probe: Probe) -> ServiceState:
    words = probe.stdout.split()
    return ServiceState("enabled" in words, "running" in words)


def service_state(profile: Profile, service: str, pidfiles: tuple[str, ...]) -> Fact[ServiceState]:
    """Whether `service` is enabled at boot and runs (pid files first, see `running_probe`)."""
    return Fact(f"{profile.enabled_probe(service)}; "
                f"{running_probe(service, pidfiles, profile.init)}", _service_state)


def sysctl_value(key: str) -> Fact[str]:
    """The running kernel's value of `key` as `sysctl -n` prints it (vector values keep their
    tabs), stripped; empty when it printed nothing."""
    return Fact(sh("sysctl", "-n", key), stripped)


def _platform(probe: Probe) -> str:
    return parse_detect(probe.stdout)[0]


def detected_platform() -> Fact[str]:
    """The platform name /etc/os-release describes (`el8`, `debian`…), empty when unknown."""
    return Fact(DETECT_PROBE, _platform)
