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


@dataclass(frozen=True)
class PackagesSeen:
    """Which of the asked packages are installed, and which asked paths do not exist."""

    installed: frozenset[str]
    absent: tuple[str, ...] = ()


def packages_installed(profile: Profile, packages: tuple[str, ...],
                       paths: tuple[str, ...] = ()) -> Fact[PackagesSeen]:
    """Which of `packages` are installed, and which of `paths` are absent (one round trip)."""
    absent = "".join(f"; [ -e {q(p)} ] || echo {framing.tag(ABSENT)} {q(p)}" for p in paths)

    def parse(probe: Probe) -> PackagesSeen:
        said = framing.tagged_words(ABSENT, probe.stdout)
        return PackagesSeen(
            frozenset(line.strip() for line in framing.untagged_lines(ABSENT, probe.stdout)),
            tuple(p for p in paths if p.split() in said))

    return Fact(profile.installed_probe(packages) + absent, parse)


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
