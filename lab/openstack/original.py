"""Provisioning an original controller: a plane's recipes applied phase by phase (install,
databases, configs, migrations, Keystone, daemons), with a progress line per phase."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.cluster import Lab
from lab.errors import LabError
from lab.hosts import LabHost
from lab.openstack import database, install, keystone
from lab.openstack.hostops import (
    edit_ini,
    edit_lines,
    has_candidate,
    process_running,
    run,
    timed,
    wait,
    wait_started,
    write,
)
from lab.openstack.planes import KEYSTONE_GLANCE, Plane
from lab.openstack.recipe import Daemon, FileWrite, IniEdit, Recipe, Site, sqlalchemy_url
from lab.openstack.services.identity import KEYSTONE
from lab.openstack.services.image import GLANCE_PORT

Progress = Callable[[str], None]


@dataclass(frozen=True)
class OriginalController:
    """What `provision_original` made: where things are and how to get in.

    The secrets are left out of the repr (tests print these objects on failure).
    """

    host: str
    address: str
    #: The packstack-style admin credentials file on the host (mode 0600, root).
    admin_rc: str
    #: Keystone's public URL as clients use it (the rc file's OS_AUTH_URL).
    keystone_url: str
    #: Glance API's URL (the catalog's image endpoints).
    glance_url: str
    region: str
    admin_password: str = field(repr=False)
    #: libpq URL of Keystone's database (usable with psql / pg_isready from any lab host).
    db_url: str = field(repr=False)
    #: libpq URL of Glance's database.
    glance_db_url: str = field(repr=False)
    #: Seconds per provisioning phase, for reports (they add up to the whole).
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    #: Seconds each service's migrations took; they run side by side in the "sync" phase.
    sync_seconds: dict[str, float] = field(default_factory=dict, compare=False)
    #: The names of the services provisioned (the plane's recipes), in start order.
    services: tuple[str, ...] = ()
    #: libpq URL of every database, by database name.
    db_urls: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def keystone_connection(self) -> str:
        """`[database] connection` of keystone.conf (SQLAlchemy form of `db_url`)."""
        return sqlalchemy_url(self.db_url)

    @property
    def glance_connection(self) -> str:
        """`[database] connection` of glance-api.conf."""
        return sqlalchemy_url(self.glance_db_url)


def prepare_new_controller(lab: Lab, host_name: str,
                           plane: Plane = KEYSTONE_GLANCE) -> None:
    """Check that a host can become a controller of `plane`: the lab's repository holds the
    plane's packages (nothing else is needed: a bare host is what is wanted).

    Beware, as on a real Debian server: `apt-get install keystone glance-api` there starts
    both daemons at once (postinst), unconfigured. Keystone's 8 uwsgi workers then die and
    respawn without pause (no fernet keys), burning both cores of the lab machine until
    /etc/keystone is copied over and Keystone restarted (or it is stopped).
    """
    host = lab.hosts[host_name]
    missing = [p for p in plane.packages if not has_candidate(host, p)]
    if missing:
        raise LabError(
            f"{host_name}: the lab's apt repository lacks {', '.join(missing)}: bring the lab "
            f"up with repo_packages holding the {plane.name} plane's repo_packages "
            "(lab.openstack.planes)"
        )


def provision_original(lab: Lab, host_name: str, state_dir: Path, *,
                       plane: Plane = KEYSTONE_GLANCE,
                       progress: Progress | None = None) -> OriginalController:
    """Make host `host_name` a packstack-style single-node controller running `plane`; see
    the package doc.

    The host is reset first (whatever was on it is lost). `state_dir` is where a copy of
    the admin credentials file is kept on the workstation (`keystonerc_admin.<host>`,
    mode 0600). `progress`, if given, gets one short line per phase. The seconds per phase
    are in the result's `timings`. Measured on 2 cores: KEYSTONE_GLANCE ~21 s cached, 80-160 s
    not; FULL_PLANE ~145 s cached (install 29 s, migrations side by side 29 s, starts ~80 s),
    ~5 min not (the install itself ~3.5 min), ~2.7 GiB PSS.
    """
    def say(line: str) -> None:
        if progress is not None:
            progress(f"{host_name}: {line}")

    started = time.monotonic()
    recipes = plane.recipes
    timings: dict[str, float] = {}
    prepare_new_controller(lab, host_name, plane)

    cached = install.is_cached(lab, plane.cache, plane.packages, plane.preseed)
    say(f"installing {len(recipes)} services' packages"
        f"{' (cached)' if cached else ' (first time: minutes)'}...")
    with timed(timings, "install"):
        install.install(lab, host_name, plane.cache, plane.packages, plane.preseed)
    host = lab.hosts[host_name]
    site = Site(host.address)
    admin_password = secrets.token_hex(16)

    say("creating the databases...")
    with timed(timings, "database"):
        database.create_databases(host, site, recipes)

    say("writing the configuration...")
    with timed(timings, "configure"):
        for recipe in recipes:
            _apply(host, recipe, site)

    say(f"database migrations of {', '.join(r.name for r in recipes if r.sync)}...")
    with timed(timings, "sync"):
        sync_seconds = _sync(host, recipes)

    for recipe in recipes:
        with timed(timings, f"start:{recipe.name}"):
            if recipe.name == KEYSTONE.name:
                say("keystone: bootstrap, start, register the services...")
                keystone.bootstrap(host, site, admin_password)
                _start(host, recipe.daemons)
                keystone.register(host, site, admin_password, recipes)
            elif recipe.daemons:
                say(f"{recipe.name}: starting {', '.join(d.name for d in recipe.daemons)}...")
                _start(host, recipe.daemons)
            if recipe.after_start:
                secrets_in = "".join(site.password(n) + "\n" for n in recipe.after_start_secrets)
                run(host, "set -eu\n" + recipe.after_start, [host.address],
                    f"finish setting up {recipe.name}", input=secrets_in)

    original = OriginalController(
        host=host_name, address=host.address, admin_rc=keystone.ADMIN_RC,
        keystone_url=f"{site.identity_url}/v3",
        glance_url=f"http://{host.address}:{GLANCE_PORT}",
        region=site.region, admin_password=admin_password,
        db_url=site.db_url("keystone", "keystone"),
        glance_db_url=site.db_url("glance", "glance"), timings=timings,
        sync_seconds=sync_seconds,
        services=tuple(r.name for r in recipes),
        db_urls={name: site.db_url(r.db_role, name)
                 for r in recipes if r.db_role for name in r.databases},
    )
    rc = keystone.admin_rc_text(admin_password, site.region, original.keystone_url)
    write(host, keystone.ADMIN_RC, rc, "root", "root", "0600")
    local = state_dir / f"keystonerc_admin.{host_name}"
    local.touch(mode=0o600)
    local.chmod(0o600)
    local.write_text(rc)
    say(f"ready in {time.monotonic() - started:.0f} s")
    return original


def _apply(host: LabHost, recipe: Recipe, site: Site) -> None:
    for edit in recipe.configure(site):
        if isinstance(edit, IniEdit):
            edit_ini(host, edit.path, edit.keys)
        elif isinstance(edit, FileWrite):
            write(host, edit.path, edit.text, edit.owner, edit.group, edit.mode)
        else:
            edit_lines(host, edit.path, edit.pattern, edit.line)


# Runs each recipe's sync (a shell function sync_N) in the background, side by side, each with
# its own log; prints "NAME MILLISECONDS" per recipe; a failure shows the tail of its log.
_SYNC_RUNNER = r"""
run_one() {
    name=$1; shift
    start=$(date +%s%N)
    if "$@" >"/var/log/hadeploy-lab-sync-$name.log" 2>&1; then
        echo "$name $(( ($(date +%s%N) - start) / 1000000 ))" >>/run/hadeploy-lab-sync.times
    else
        echo "$name failed" >>/run/hadeploy-lab-sync.times
    fi
}
: >/run/hadeploy-lab-sync.times
"""


def _sync(host: LabHost, recipes: Sequence[Recipe]) -> dict[str, float]:
    """Run every recipe's sync script on the host side by side; seconds per recipe name."""
    script = ["set -u", _SYNC_RUNNER]
    names = []
    for index, recipe in enumerate(r for r in recipes if r.sync):
        script.append(f"sync_{index}() {{\nset -e\n{recipe.sync}\n}}")
        names.append(recipe.name)
    script += [f'run_one {name} sync_{index} "$1" &' for index, name in enumerate(names)]
    script += ["wait", "cat /run/hadeploy-lab-sync.times"]
    out = run(host, "\n".join(script), [host.address], "run the database migrations",
              timeout=1800)
    timings: dict[str, float] = {}
    failed = []
    for line in out.splitlines():
        name, seconds = line.split()
        if seconds == "failed":
            failed.append(name)
        else:
            timings[name] = round(int(seconds) / 1000, 1)
    if failed or len(timings) != len(names):
        failed = failed or [n for n in names if n not in timings]
        logs = host.exec(" ".join(["tail", "-n", "15"] +
                                  [f"/var/log/hadeploy-lab-sync-{n}.log" for n in failed]),
                         check=False).stdout
        raise LabError(f"{host.name}: the setup of {', '.join(failed)} failed\n{logs}")
    return timings


def _start(host: LabHost, daemons: Sequence[Daemon]) -> None:
    """Start daemons with their init scripts, in order, each verified (an init script
    reports success for a daemon that died at once)."""
    for daemon in daemons:
        run(host, daemon.start or 'service "$1" start >/dev/null', [daemon.name],
            f"start {daemon.name}")
        if daemon.port is not None:
            wait_started(host, daemon.name, daemon.port, daemon.path, log_glob=daemon.log)
        elif daemon.process is not None and not wait(
                functools.partial(process_running, host, daemon.process), 60):
            raise LabError(f"{host.name}: {daemon.name} is not running after its start")
