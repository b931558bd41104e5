"""The offline apt repository every lab host uses as its only package source.

Lab hosts have no route out, so `apt-get install` on a host can only work from local files.
This module downloads the .debs a list of packages needs (the recursive dependency closure,
without Recommends, every alternative included, so apt on a host can always resolve) with
`apt-get download` in the root namespace, into a persistent cache, and indexes them with
`dpkg-scanpackages` as a flat repository (`deb [trusted=yes] file:DIR ./`).

The cache is `$HADEPLOY_LAB_CACHE/debs` (default `/var/cache/hadeploy-lab/debs`). Nothing is
downloaded when the cache already holds what is asked for; the package list is extensible
(`ensure_repo(DEFAULT_PACKAGES + ("keystone", ...))`): the cache keeps the union of all.
"""

from __future__ import annotations

import contextlib
import email.utils
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.procs import CLEAN_ENV, run

DEFAULT_CACHE_DIR = Path("/var/cache/hadeploy-lab")
CACHE_ENV = "HADEPLOY_LAB_CACHE"
#: What the lab's repository holds by default; later issues add OpenStack packages.
#: socat: hadeploy drains servers through haproxy's stats socket with it (lb.packages).
DEFAULT_PACKAGES: tuple[str, ...] = ("haproxy", "keepalived", "socat")

_APT_OPTS = ("-o", "APT::Sandbox::User=root", "-q")
_DEPENDS_OPTS = (
    "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
    "--no-breaks", "--no-replaces", "--no-enhances",
)


# Part of the cache manifest's key: a change in how requests are resolved resolves them again.
_RESOLVER = " +upgrades"

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def check_package_names(names: Sequence[str]) -> None:
    """Refuse anything that is not a Debian package name (they reach apt and dpkg)."""
    bad = [n for n in names if not _PACKAGE_NAME.match(n)]
    if bad:
        raise LabError(f"not Debian package names: {', '.join(map(repr, bad))}")


def cache_dir() -> Path:
    """The lab's persistent cache root (debs and base layers): $HADEPLOY_LAB_CACHE or default."""
    value = os.environ.get(CACHE_ENV)
    return Path(value) if value else DEFAULT_CACHE_DIR


@dataclass(frozen=True)
class AptRepo:
    """A ready flat repository: its directory and a digest of its index (changes with content)."""

    path: Path
    index_digest: str


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Serialise cache updates between concurrent lab start-ups."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_repo(packages: Sequence[str] = DEFAULT_PACKAGES, cache: Path | None = None) -> AptRepo:
    """Make sure the cache holds `packages` with their dependency closure, indexed; return it."""
    check_package_names(packages)
    root = cache if cache is not None else cache_dir()
    debs = root / "debs"
    request = sorted(set(packages))
    with cache_lock(root):
        debs.mkdir(parents=True, exist_ok=True)
        manifest_path = debs / "requests.json"
        manifest = _read_manifest(manifest_path)
        key = " ".join(request) + _RESOLVER
        known = manifest.get(key)
        if known is None or not all((debs / name).is_file() for name in known):
            wanted, changed = _fetch(debs, request)
            manifest[key] = sorted(wanted.values())
            _write_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        else:
            changed = False
        if changed or not (debs / "Packages").is_file():
            _index(debs)
    digest = hashlib.sha256((debs / "Packages").read_bytes()).hexdigest()
    return AptRepo(path=debs, index_digest=digest)


def _read_manifest(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): [str(x) for x in v] for k, v in data.items()} if isinstance(data, dict) else {}


def _closure(request: Sequence[str]) -> list[str]:
    """Names of every real package `request` depends on, recursively (alternatives included),
    plus what `apt-get install` would upgrade alongside on the workstation."""
    out = run(["apt-cache", "depends", *_DEPENDS_OPTS, *request],
              what="resolve the lab packages' dependencies").stdout
    names = {line.strip() for line in out.splitlines() if line and not line[0].isspace()}
    # <name> are virtual packages: they have no .deb of their own.
    return sorted({n for n in names if not n.startswith("<")} | set(_upgrades(request)))


def _upgrades(request: Sequence[str]) -> list[str]:
    """Installed packages that `apt-get install request` would upgrade on the workstation.

    The dependency closure brings e.g. a newer libsystemd0 (udev needs it); without the
    matching newer systemd in the repository, apt on a host *removes* systemd, systemd-sysv
    (and with it `runlevel`, so invoke-rc.d starts nothing) instead of upgrading them as a
    real server with a full mirror would. A simulation (no lock, nothing changes) names them.
    """
    result = run(["apt-get", *_APT_OPTS, "install", "-s", "--no-install-recommends", *request],
                 what="simulate installing the lab packages", check=False)
    if result.returncode != 0:
        return []
    # "Inst NAME [INSTALLED-VERSION] (CANDIDATE ...)": only upgrades have the [...] part.
    return [parts[1].split(":")[0] for parts in map(str.split, result.stdout.splitlines())
            if len(parts) > 2 and parts[0] == "Inst" and parts[2].startswith("[")]


def _fetch(debs: Path, request: Sequence[str]) -> tuple[dict[str, str], bool]:
    """Resolve and download; if the workstation's apt lists are missing or out of date (a
    fresh machine, a mirror that moved on), run `apt-get update` once and try again."""
    try:
        wanted = _resolve(request)
        return wanted, _download(debs, wanted)
    except LabError:
        run(["apt-get", "-q", "update"], what="apt-get update (to download lab packages)")
        wanted = _resolve(request)
        return wanted, _download(debs, wanted)


def _resolve(request: Sequence[str]) -> dict[str, str]:
    """Map package name -> .deb file name of its candidate, for the whole closure."""
    names = _downloadable(_closure(request))
    out = run(["apt-get", *_APT_OPTS, "--print-uris", "download", *names],
              what="list the lab packages' .debs").stdout
    files: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("'") and parts[1].endswith(".deb"):
            files[parts[1].split("_", 1)[0]] = parts[1]
    missing = [p for p in request if p not in files]
    if missing:
        raise LabError(f"no installable candidate for {', '.join(missing)} in apt's lists")
    return files


def _downloadable(names: Sequence[str]) -> list[str]:
    """`names` minus packages whose candidate is only the workstation's installed copy (e.g.
    nodejs from a third-party repository no longer in its sources, which novnc depends on):
    apt cannot download them, and hosts see them installed through their lower layer."""
    out = run(["apt-cache", "policy", *names], what="look up the lab packages' sources").stdout
    sources: dict[tuple[str, str], list[str]] = {}
    candidates: dict[str, str] = {}
    name = version = ""
    for line in out.splitlines():
        fields = line.split()
        if line and not line[0].isspace():
            name = line.rstrip(":").split(":")[0]
        elif fields[:1] == ["Candidate:"]:
            candidates[name] = fields[1]
        elif line.startswith((" *** ", "     ")) and not line.startswith("      "):
            # A version line of the table ("*** VERSION PRIO" or "VERSION PRIO")...
            version = fields[-2]
        elif line.startswith("        ") and len(fields) >= 2:
            # ... and its sources, indented further.
            sources.setdefault((name, version), []).append(fields[1])
    local_only = {n for n, v in candidates.items()
                  if sources.get((n, v), []) == ["/var/lib/dpkg/status"]}
    return [n for n in names if n not in local_only]


def _download(debs: Path, wanted: dict[str, str]) -> bool:
    """Download the .debs the cache lacks; drop other versions of those packages. Changed?"""
    missing = {name: file for name, file in wanted.items() if not (debs / file).is_file()}
    if not missing:
        return False
    incoming = debs / ".incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir()
    env = dict(CLEAN_ENV)
    env.update({k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy")})
    run(["apt-get", *_APT_OPTS, "download", *sorted(missing)], cwd=incoming, env=env,
        what=f"download {len(missing)} .debs for the lab", timeout=1800)
    for name, file in missing.items():
        if not (incoming / file).is_file():
            raise LabError(f"apt-get download did not produce {file} (package {name})")
        for old in debs.glob(f"{name}_*.deb"):
            old.unlink()
        (incoming / file).replace(debs / file)
    shutil.rmtree(incoming, ignore_errors=True)
    return True


def _index(debs: Path) -> None:
    """Write Packages and a Release file (so apt does not warn about a missing Release)."""
    packages = run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=debs,
                   what="index the lab's apt repository", timeout=1800).stdout
    _write_atomic(debs / "Packages", packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    release = (
        "Origin: hadeploy-lab\nLabel: hadeploy-lab\nSuite: hadeploy-lab\nCodename: hadeploy-lab\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\n"
        f"SHA256:\n {digest} {len(packages.encode())} Packages\n"
    )
    _write_atomic(debs / "Release", release)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
