"""A real original controller in the lab: Keystone and Glance from Debian 12's own packages,
left the way packstack leaves a single-node controller (release "modern", platform "debian").

    lab = Lab.up(LAB_HOSTS, state_dir, repo_packages=LAB_REPO_PACKAGES)
    original = provision_original(lab, "ctl1", state_dir)
    lab.hosts["ctl1"].exec(f". {original.admin_rc} && openstack token issue")
    prepare_new_controller(lab, "ctl2")       # checks only: a bare host is what is needed

What `provision_original` leaves on the host (address A, e.g. 198.18.0.14):

- PostgreSQL (already in the workstation's root file system, so in every host's lower layer)
  listening on localhost and A, `pg_hba.conf` allowing 198.18.0.0/24 with passwords; the
  databases `keystone` and `glance`, each owned by a role of the same name.
- Keystone under uwsgi (Debian's init script), 2 worker processes (`processes = 2` in
  /etc/keystone/keystone-uwsgi.ini; Debian's 8 cost ~0.7 GiB more), fernet and credential
  keys, bootstrapped with user/project/role `admin`, region `RegionOne` and identity
  endpoints `http://A:5000` (public, internal, admin), as packstack registers them.
  **Bind: all addresses.** Debian keeps Keystone's listen address outside /etc/keystone, in
  `DAEMON_ARGS` of /etc/default/keystone, which is written explicitly:
  `DAEMON_ARGS="--http-socket 0.0.0.0:5000 --ini /etc/keystone/keystone-uwsgi.ini"`
  (packstack's httpd vhost also listens on every address); hadeploy rewrites it on nodes
  that must bind their own address.
- Glance API (Debian's eventlet `glance-api`) with its database synced, the `glance` user in
  project `services` (packstack's name) with role admin, and the `image` service with
  public, internal and admin endpoints `http://A:9292`. glance-api.conf has
  `[DEFAULT] bind_host = A` and `[keystone_authtoken] www_authenticate_uri` and `auth_url`
  `http://A:5000`: the keys hadeploy rewrites.
- `/root/keystonerc_admin` (mode 0600) in packstack's format, `OS_AUTH_URL=http://A:5000/v3`.
- Database URLs on A (`postgresql+psycopg2://keystone:...@A/keystone`), as packstack writes
  its controller's address: copied configs reach the same database from any controller.

Every password (admin, the two database roles, glance's service user) is random for each
provisioning and never printed: the dataclass hides them from its repr, and they reach the
host only through standard input or files, never a command line.

How it is done: debconf is preseeded so dbconfig-common and the packages' own setup
configure nothing; a host `/usr/sbin/policy-rc.d` (exit 101) blocks every service start
during `apt-get install` (glance-api pulls in udev; Keystone would start unconfigured and
crash-loop) and is removed afterwards; then everything is configured by hand, each daemon
started with its init script and its start verified by polling its port (init scripts
report success for daemons that died at once).

Caching: the .debs come from the lab's offline repository (`aptrepo`, persistent). The
installation itself is cached too: after a real `apt-get install` on a freshly reset host,
the host's disk (its overlay upper layers) is saved under `<cache>/openstack/<key>/`, minus
the host-specific files (SSH host keys, hostname, machine id, logs, the lab's whiteouts);
the next provisioning lays that copy into a freshly reset host instead of installing. That
copy holds no secret (nothing is configured yet: no database, no keys, no passwords), and
its key covers the base layer (itself keyed on the workstation's dpkg status), the
repository's current index, the package list and the install recipe, so it is never stale.
Laying it in takes ~5 s (~490 MB, 31,000 files; more while other work loads the disk)
instead of ~60 s of apt-get; the newest two are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hadeploy.render.ini import set_ini_value
from lab import aptrepo, overlay
from lab.cluster import Lab
from lab.errors import LabError
from lab.hosts import LabHost

#: What an original controller and the new controllers install (Debian 12 package names):
#: Keystone, Glance's API, the openstack CLI and the PostgreSQL driver (python3-oslo.db
#: depends on it too, so new controllers get it with keystone). PostgreSQL itself comes
#: from the workstation's root file system (the hosts' lower layer).
OPENSTACK_PACKAGES: tuple[str, ...] = (
    "keystone", "glance-api", "python3-openstackclient", "python3-psycopg2",
)
#: `repo_packages` for a lab whose hosts can become OpenStack controllers.
LAB_REPO_PACKAGES: tuple[str, ...] = (*aptrepo.DEFAULT_PACKAGES, *OPENSTACK_PACKAGES)

REGION = "RegionOne"
ADMIN_RC = "/root/keystonerc_admin"
SERVICE_PROJECT = "services"
KEYSTONE_PORT = 5000
GLANCE_PORT = 9292
LAB_NETWORK = "198.18.0.0/24"
KEYSTONE_WORKERS = 2

#: Debconf answers so that neither dbconfig-common nor the packages configure anything.
DEBCONF_PRESEED = """\
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
glance-common glance/configure_db boolean false
glance-common glance/configure_rabbit boolean false
glance-common glance/configure_ksat boolean false
glance-api glance/configure_api-endpoint boolean false
"""

# $@: packages. Service starts are blocked while the packages install (and unblocked
# whatever happens); the debconf answers come first.
_INSTALL_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\n# hadeploy lab: no service starts while installing\nexit 101\n' \
    >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
printf '%s' "$PRESEED" | debconf-set-selections
apt-get -q update >/dev/null
apt-get install -y -q --no-install-recommends "$@" >/var/log/hadeploy-lab-install.log 2>&1 || {
    tail -n 30 /var/log/hadeploy-lab-install.log >&2
    exit 1
}
"""

# $1 host address, $2 lab network. PostgreSQL listens on the lab address too, and lets the
# lab network in with passwords.
_POSTGRES_SCRIPT = r"""
set -eu
addr=$1 net=$2
conf=$(ls -d /etc/postgresql/*/main 2>/dev/null | sort -V | tail -n 1)
[ -d "$conf" ] || {
    echo "no PostgreSQL cluster under /etc/postgresql: the lab's hosts get PostgreSQL from" \
        "the workstation's root file system (apt-get install postgresql there)" >&2
    exit 1
}
printf "# hadeploy lab: reachable by the other controllers\nlisten_addresses = 'localhost,%s'\n" \
    "$addr" >"$conf/conf.d/hadeploy-lab.conf"
grep -q "^host all all $net " "$conf/pg_hba.conf" \
    || printf 'host all all %s scram-sha-256\n' "$net" >>"$conf/pg_hba.conf"
service postgresql start >/dev/null
i=0
until pg_isready -q -h "$addr" -p 5432 -t 1; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || { echo "PostgreSQL did not come up on $addr:5432" >&2; exit 1; }
    sleep 0.5
done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres
"""

# $1 keystone's base URL, $2 region. stdin: the admin password. The four independent
# python start-ups (each ~2 s of CPU) run side by side, then bootstrap, then both daemons start.
_CONFIGURE_SCRIPT = r"""
set -eu
url=$1 region=$2
IFS= read -r OS_BOOTSTRAP_PASSWORD
install -d -o keystone -g keystone -m 0700 /etc/keystone/fernet-keys /etc/keystone/credential-keys
install -d -o keystone -g adm -m 0750 /var/log/keystone
install -d -o glance -g glance -m 0750 /var/lib/glance/images
ks() { runuser -u keystone -- keystone-manage "$@"; }
ks db_sync & a=$!
ks fernet_setup --keystone-user keystone --keystone-group keystone & b=$!
ks credential_setup --keystone-user keystone --keystone-group keystone & c=$!
runuser -u glance -- glance-manage db_sync >/dev/null 2>&1 & d=$!
wait $a; wait $b; wait $c
wait $d || { echo "glance-manage db_sync failed" >&2; exit 1; }
export OS_BOOTSTRAP_PASSWORD
ks bootstrap --bootstrap-username admin --bootstrap-project-name admin \
    --bootstrap-role-name admin --bootstrap-service-name keystone \
    --bootstrap-region-id "$region" --bootstrap-admin-url "$url" \
    --bootstrap-internal-url "$url" --bootstrap-public-url "$url"
unset OS_BOOTSTRAP_PASSWORD
service keystone start >/dev/null
service glance-api start >/dev/null
"""

# Runs on the host with the packages' python3; reads its parameters as one JSON line on stdin
# (the passwords never reach a command line). Creates packstack's service project, glance's
# service user and the image service with its three endpoints.
_REGISTER_GLANCE = r"""
import json, sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client

p = json.loads(sys.stdin.readline())
auth = v3.Password(auth_url=p["auth_url"], username="admin", password=p["admin_password"],
                   project_name="admin", user_domain_name="Default",
                   project_domain_name="Default")
ks = client.Client(session=session.Session(auth=auth), interface="public",
                   region_name=p["region"])
# Idempotent, so a retry after a dropped connection (uwsgi workers still starting) is safe.
project = (ks.projects.list(name=p["project"]) or
           [ks.projects.create(p["project"], domain="default",
                               description="Tenant for the openstack services")])[0]
user = (ks.users.list(name="glance") or
        [ks.users.create("glance", domain="default", password=p["glance_password"],
                         default_project=project)])[0]
admin = [r for r in ks.roles.list() if r.name == "admin"][0]
ks.roles.grant(admin, user=user, project=project)
service = (ks.services.list(name="glance") or
           [ks.services.create("glance", type="image",
                               description="OpenStack Image Service")])[0]
have = {e.interface for e in ks.endpoints.list(service=service)}
for interface in ("public", "internal", "admin"):
    if interface not in have:
        ks.endpoints.create(service, p["url"], interface=interface, region=p["region"])
"""

# Host files that must not travel in a saved installation (relative to the disk's upper).
_HOST_SPECIFIC = (
    "etc/hostname", "etc/machine-id", "etc/hosts", "etc/ssh/ssh_host_*",
    "root/.ssh", "home/*/.ssh", "var/log/syslog*", "var/log/hadeploy-lab-install.log",
    "root/.bash_history", "root/.python_history",
)
_KEEP_INSTALLS = 2


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
    #: Seconds per provisioning phase, for reports.
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def keystone_connection(self) -> str:
        """`[database] connection` of keystone.conf (SQLAlchemy form of `db_url`)."""
        return _sqlalchemy(self.db_url)

    @property
    def glance_connection(self) -> str:
        """`[database] connection` of glance-api.conf."""
        return _sqlalchemy(self.glance_db_url)


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def prepare_new_controller(lab: Lab, host_name: str) -> None:
    """Check that a host can become a new controller: nothing is set up on it.

    A new controller needs nothing a bare lab host lacks: `deploy-controllers` installs the
    packages itself (from the lab's offline repository, which must hold
    OPENSTACK_PACKAGES, see LAB_REPO_PACKAGES), the PostgreSQL driver comes with keystone's
    dependencies, psql/pg_isready are in the hosts' lower layer, and the database on the
    original already lets the lab network in.

    Beware, as on a real Debian server: `apt-get install keystone glance-api` there starts
    both daemons at once (postinst), unconfigured. Keystone's 8 uwsgi workers then die and
    respawn without pause (no fernet keys), burning both cores of the lab machine until
    /etc/keystone is copied over and Keystone restarted (or it is stopped).
    """
    host = lab.hosts[host_name]
    missing = [p for p in OPENSTACK_PACKAGES if not _has_candidate(host, p)]
    if missing:
        raise LabError(
            f"{host_name}: the lab's apt repository lacks {', '.join(missing)}: bring the lab "
            "up with repo_packages=lab.openstack.LAB_REPO_PACKAGES"
        )


def provision_original(lab: Lab, host_name: str, state_dir: Path) -> OriginalController:
    """Make host `host_name` a packstack-style single-node controller; see the module doc.

    The host is reset first (whatever was on it is lost). `state_dir` is where a copy of
    the admin credentials file is kept on the workstation (`keystonerc_admin.<host>`,
    mode 0600) for tests that run the openstack CLI elsewhere. Measured on 2 cores: ~21 s
    with the installation cached, ~80 s without (the install itself ~60 s). The seconds
    per phase are in the result's `timings`.
    """
    host = lab.hosts[host_name]
    address = host.address
    timings: dict[str, float] = {}
    prepare_new_controller(lab, host_name)

    with _timed(timings, "install"):
        _install(lab, host_name)
    host = lab.hosts[host_name]

    admin_password = secrets.token_hex(16)
    keystone_db_password = secrets.token_hex(16)
    glance_db_password = secrets.token_hex(16)
    glance_password = secrets.token_hex(16)
    db_url = f"postgresql://keystone:{keystone_db_password}@{address}/keystone"
    glance_db_url = f"postgresql://glance:{glance_db_password}@{address}/glance"
    identity_url = f"http://{address}:{KEYSTONE_PORT}"
    original = OriginalController(
        host=host_name, address=address, admin_rc=ADMIN_RC,
        keystone_url=f"{identity_url}/v3", glance_url=f"http://{address}:{GLANCE_PORT}",
        region=REGION, admin_password=admin_password, db_url=db_url,
        glance_db_url=glance_db_url, timings=timings,
    )

    with _timed(timings, "database"):
        sql = "".join(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {name} OWNER {name};\n"
            for name, password in (("keystone", keystone_db_password),
                                   ("glance", glance_db_password))
        )
        _run(host, _POSTGRES_SCRIPT, [address, LAB_NETWORK], "set up PostgreSQL", input=sql)

    with _timed(timings, "configure"):
        _edit_ini(host, "/etc/keystone/keystone.conf", [
            ("database", "connection", original.keystone_connection),
            ("token", "provider", "fernet"),
        ])
        _edit_ini(host, "/etc/keystone/keystone-uwsgi.ini", [
            ("uwsgi", "processes", str(KEYSTONE_WORKERS)),
        ])
        _write(host, "/etc/default/keystone", _keystone_default(), "root", "root", "0644")
        _edit_ini(host, "/etc/glance/glance-api.conf", [
            ("DEFAULT", "bind_host", address),
            ("database", "connection", original.glance_connection),
            ("keystone_authtoken", "www_authenticate_uri", identity_url),
            ("keystone_authtoken", "auth_url", identity_url),
            ("keystone_authtoken", "region_name", REGION),
            ("keystone_authtoken", "project_name", SERVICE_PROJECT),
            ("keystone_authtoken", "username", "glance"),
            ("keystone_authtoken", "password", glance_password),
            ("paste_deploy", "flavor", "keystone"),
        ])

    with _timed(timings, "sync_and_start"):
        _run(host, _CONFIGURE_SCRIPT, [identity_url, REGION],
             "set up Keystone and Glance (db_sync, keys, bootstrap, start)",
             input=admin_password + "\n", timeout=600)
        _wait_started(host, "keystone", KEYSTONE_PORT, "/v3")
        _wait_started(host, "glance-api", GLANCE_PORT, "/")

    with _timed(timings, "register"):
        params = {"auth_url": original.keystone_url, "admin_password": admin_password,
                  "glance_password": glance_password, "project": SERVICE_PROJECT,
                  "region": REGION, "url": original.glance_url}
        for attempt in range(3):
            try:
                _run_python(host, _REGISTER_GLANCE, json.dumps(params) + "\n",
                            "register Glance in Keystone")
                break
            except LabError:
                if attempt == 2:
                    raise
                time.sleep(3)

    rc = admin_rc_text(original)
    _write(host, ADMIN_RC, rc, "root", "root", "0600")
    local = state_dir / f"keystonerc_admin.{host_name}"
    local.touch(mode=0o600)
    local.chmod(0o600)
    local.write_text(rc)
    return original


def admin_rc_text(original: OriginalController) -> str:
    """packstack's keystonerc_admin, for Keystone v3, pointing at the original."""
    return (
        "unset OS_SERVICE_TOKEN\n"
        "    export OS_USERNAME=admin\n"
        f"    export OS_PASSWORD='{original.admin_password}'\n"
        f"    export OS_REGION_NAME={original.region}\n"
        f"    export OS_AUTH_URL={original.keystone_url}\n"
        "    export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '\n"
        "\n"
        "export OS_PROJECT_NAME=admin\n"
        "export OS_USER_DOMAIN_NAME=Default\n"
        "export OS_PROJECT_DOMAIN_NAME=Default\n"
        "export OS_IDENTITY_API_VERSION=3\n"
    )


def _keystone_default() -> str:
    return (
        "# hadeploy lab (packstack-style original controller): Keystone's uwsgi listens on\n"
        "# every address. Debian's init script reads its listen address from here, not\n"
        "# from /etc/keystone.\n"
        f'DAEMON_ARGS="--http-socket 0.0.0.0:{KEYSTONE_PORT} '
        '--ini /etc/keystone/keystone-uwsgi.ini"\n'
    )


def host_pss_bytes(host: LabHost) -> int:
    """Proportional memory (PSS) of every process of a lab host, in bytes."""
    out = host.exec("cat /proc/[0-9]*/smaps_rollup 2>/dev/null || true").stdout
    return sum(int(line.split()[1]) * 1024 for line in out.splitlines()
               if line.startswith("Pss:"))


# --- installation (cached) -----------------------------------------------------------------

def _install_key(lab: Lab) -> str:
    base = lab.base_layer
    if base is None:
        raise LabError("the lab has no base layer: is it up?")
    try:
        base_manifest = (base.parent / "manifest.json").read_bytes()
    except FileNotFoundError as err:
        raise LabError(f"the lab's base layer {base} has no manifest") from err
    try:
        index = (lab.cache_dir / "debs" / "Packages").read_bytes()
    except FileNotFoundError as err:
        raise LabError(f"the lab's apt repository in {lab.cache_dir} has no index") from err
    blob = json.dumps({
        "base": str(base),
        # The install runs `apt-get update` first: the repository as it is now counts.
        "repo_index": hashlib.sha256(index).hexdigest(),
        "base_manifest": hashlib.sha256(base_manifest).hexdigest(),
        "packages": sorted(OPENSTACK_PACKAGES),
        "preseed": DEBCONF_PRESEED,
        "script": _INSTALL_SCRIPT,
        "host_specific": _HOST_SPECIFIC,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _install(lab: Lab, host_name: str) -> None:
    """Reset the host, then install OPENSTACK_PACKAGES (or lay a saved installation in)."""
    cache = lab.cache_dir / "openstack"
    key = _install_key(lab)
    saved = cache / key
    with aptrepo.cache_lock(lab.cache_dir):
        if (saved / "complete").is_file():
            os.utime(saved)
            lab.reset_host(host_name, seed=saved / "upper")
            return
    lab.reset_host(host_name)
    host = lab.hosts[host_name]
    _run(host, _INSTALL_SCRIPT, list(OPENSTACK_PACKAGES), "install the OpenStack packages",
         timeout=1200, env={"PRESEED": DEBCONF_PRESEED})
    build = cache / f".build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    try:
        lab.save_disk(host_name, build / "upper")
        _drop_host_specific(build / "upper", lab)
        (build / "complete").write_text(json.dumps({"saved": time.time()}) + "\n")
        with aptrepo.cache_lock(lab.cache_dir):
            if not saved.exists():
                build.replace(saved)
            _prune(cache, keep=saved)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _drop_host_specific(upper: Path, lab: Lab) -> None:
    for pattern in _HOST_SPECIFIC:
        for path in upper.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # The whiteouts hiding the lab's state and cache directories are the lab's, not the
    # installation's: each lab's reset makes its own.
    for hidden in (lab.state_dir, lab.cache_dir):
        if overlay.lab_dir_of(hidden) is not None:
            target = upper / Path(*hidden.resolve().parts[1:])
            with contextlib.suppress(FileNotFoundError):
                if overlay.is_whiteout(target):
                    target.unlink()


def _prune(cache: Path, keep: Path) -> None:
    others = sorted(
        (p for p in cache.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )
    for old in others[_KEEP_INSTALLS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


# --- helpers -----------------------------------------------------------------------------

@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(time.monotonic() - started, 1)


def _has_candidate(host: LabHost, package: str) -> bool:
    out = host.exec(["apt-cache", "policy", package], check=False).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def _run(host: LabHost, script: str, args: Sequence[str], what: str, *,
         input: str | None = None, timeout: float = 300,
         env: dict[str, str] | None = None) -> str:
    """Run a shell script on the host as root; a failure becomes a LabError with its stderr."""
    argv = ["/bin/sh", "-c", script, "hadeploy-lab", *args]
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    result = host.exec(argv, check=False, input=input, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise LabError(f"{host.name}: could not {what} (exit {result.returncode})\n{tail}")
    return result.stdout


def _run_python(host: LabHost, code: str, stdin: str, what: str) -> None:
    result = host.exec(["python3", "-c", code], check=False, input=stdin, timeout=300)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-12:])
        raise LabError(f"{host.name}: could not {what} (exit {result.returncode})\n{tail}")


def _write(host: LabHost, path: str, text: str, owner: str, group: str, mode: str) -> None:
    """Write a file on the host through stdin (contents never on a command line)."""
    _run(host, 'umask 077; cat >"$1.hadeploy-tmp"; chown "$2:$3" "$1.hadeploy-tmp"; '
         'chmod "$4" "$1.hadeploy-tmp"; mv -f "$1.hadeploy-tmp" "$1"',
         [path, owner, group, mode], f"write {path}", input=text)


def _edit_ini(host: LabHost, path: str, edits: Sequence[tuple[str, str, str]]) -> None:
    """Set keys of an ini file on the host in place (owner, mode and comments kept)."""
    text = host.exec(["cat", path]).stdout
    for section, key, value in edits:
        text = set_ini_value(text, section, key, value)
    _run(host, 'cat >"$1"', [path], f"edit {path}", input=text)


def _wait_started(host: LabHost, service: str, port: int, path: str,
                  seconds: float = 90) -> None:
    """Wait until a daemon just started answers HTTP on its port (init scripts say "ok" for
    daemons that died at once)."""
    if not _wait(lambda: _http_answers(host.address, port, path), seconds):
        log = host.exec(f"tail -n 15 /var/log/{service.split('-')[0]}/*.log 2>/dev/null || true",
                        check=False).stdout
        raise LabError(f"{host.name}: {service} did not answer on {host.address}:{port} "
                       f"within {seconds:.0f} s\n{log}")


def _http_answers(address: str, port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(address, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def _wait(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False
