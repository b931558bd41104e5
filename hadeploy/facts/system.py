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
# Debian's policy-rc.d, and the blocking one hadeploy puts there for a package install only
# (a printf format; it names itself so that one a dead run left is told from the operator's).
POLICY_RC = "/usr/sbin/policy-rc.d"
GUARD = r"#!/bin/sh\n# hadeploy: service starts blocked during a package install\nexit 101\n"
# Shell test, with $p the policy-rc.d path: it is hadeploy's guard.
IS_GUARD = f'{{ [ -e "$p" ] && [ "$(cat "$p")" = "$(printf {q(GUARD)})" ]; }}'
# Left by a run that died during an install: the guard itself, or the operator's file moved
# aside with no guard in its place (what `restore` in ops/packages.py undoes).
STALE_GUARD = "stale-guard"
STALE_GUARD_PROBE = (f'p={POLICY_RC}; if {IS_GUARD} || {{ [ ! -e "$p" ] && '
                     f'[ -e "$p.hadeploy-saved" ]; }}; then echo {framing.tag(STALE_GUARD)}; fi')
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
    """Which of the asked packages are installed, which asked paths do not exist, which
    processes hold the package manager's lock (`PID COMMAND LINE`; Debian only), and whether
    a dead run left its policy-rc.d guard (asked for only)."""

    installed: frozenset[str]
    absent: tuple[str, ...] = ()
    busy: tuple[str, ...] = ()
    stale_guard: bool = False


def packages_installed(profile: Profile, packages: tuple[str, ...],
                       paths: tuple[str, ...] = (), guard: bool = False) -> Fact[PackagesSeen]:
    """Which of `packages` are installed, which of `paths` are absent, and on Debian who holds
    the package manager's lock (a run whose workstation died leaves its apt-get running)
    and, with `guard`, whether such a run left its policy-rc.d guard, in one round trip."""
    absent = "".join(f"; [ -e {q(p)} ] || echo {framing.tag(ABSENT)} {q(p)}" for p in paths)
    listing = profile.installed_probe(packages)
    busy = ""
    if profile.family == "debian":
        # the lock's holders matter only to an install: looked for only when a package is
        # missing (fewer names listed than asked for), not on every probe of a no-op
        listing = (f'installed=$({listing}); [ -z "$installed" ] || '
                   "printf '%s\\n' \"$installed\"")
        busy = (f"\n{PM_LOCK_HOLDERS}set -- $installed\n"
                f"[ $# -ge {len(set(packages))} ] || hadeploy_pm_holders {sh(*DPKG_LOCKS)} "
                f"| sed 's/^/{framing.tag(PM_LOCK)} /'")
    stale = f"\n{STALE_GUARD_PROBE}" if guard and profile.family == "debian" else ""

    def parse(probe: Probe) -> PackagesSeen:
        said = framing.tagged_words(ABSENT, probe.stdout)
        holders = tuple(" ".join(words) for words in framing.tagged_words(PM_LOCK, probe.stdout))
        plain = probe.stdout
        for name in (ABSENT, PM_LOCK, STALE_GUARD):
            plain = "\n".join(framing.untagged_lines(name, plain))
        return PackagesSeen(frozenset(line.strip() for line in plain.splitlines()
                                      if line.strip()),
                            tuple(p for p in paths if p.split() in said),
                            holders, bool(framing.tagged_words(STALE_GUARD, probe.stdout)))

    return Fact(listing + absent + busy + stale, parse)


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
