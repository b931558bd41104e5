"""What one OpenStack service of the lab's original controller needs, as data: its packages,
debconf answers, databases, config edits, migrations, daemons and Keystone registration.

A control plane is then a list of recipes (see `planes`), provisioned phase by phase for all
of them at once by `original.provision_original`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lab.network import NETWORK

LAB_NETWORK = NETWORK
REGION = "RegionOne"
#: packstack's project for the services' users.
SERVICE_PROJECT = "services"
KEYSTONE_PORT = 5000


@dataclass(frozen=True)
class Site:
    """Where a plane is provisioned and its secrets: what a recipe's config edits depend on.

    Passwords are drawn at random on first use, one per name, and kept out of the repr.
    """

    address: str
    region: str = REGION
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def identity_url(self) -> str:
        """Keystone's base URL on the original (packstack's `www_authenticate_uri`)."""
        return f"http://{self.address}:{KEYSTONE_PORT}"

    def password(self, name: str) -> str:
        """The random password called `name` (e.g. "db:nova", "user:nova", "rabbit")."""
        return self.passwords.setdefault(name, secrets.token_hex(16))

    def db_url(self, role: str, database: str) -> str:
        """libpq URL of `database` on the original as `role` (usable with psql anywhere)."""
        return f"postgresql://{role}:{self.password('db:' + role)}@{self.address}/{database}"

    def db_connection(self, role: str, database: str) -> str:
        """`[database] connection` form (SQLAlchemy) of `db_url`, as packstack writes it."""
        return sqlalchemy_url(self.db_url(role, database))

    @property
    def transport_url(self) -> str:
        """oslo.messaging's RabbitMQ URL on the original."""
        return f"rabbit://openstack:{self.password('rabbit')}@{self.address}:5672/"

    def authtoken(self, user: str) -> list[tuple[str, str, str]]:
        """`[keystone_authtoken]` as packstack writes it for service user `user`."""
        return [
            ("keystone_authtoken", "www_authenticate_uri", self.identity_url),
            ("keystone_authtoken", "auth_url", self.identity_url),
            ("keystone_authtoken", "memcached_servers", f"{self.address}:11211"),
            ("keystone_authtoken", "auth_type", "password"),
            ("keystone_authtoken", "region_name", self.region),
            ("keystone_authtoken", "project_domain_name", "Default"),
            ("keystone_authtoken", "user_domain_name", "Default"),
            ("keystone_authtoken", "project_name", SERVICE_PROJECT),
            ("keystone_authtoken", "username", user),
            ("keystone_authtoken", "password", self.password("user:" + user)),
        ]

    def service_auth(self, section: str, user: str) -> list[tuple[str, str, str]]:
        """A keystoneauth password section (e.g. nova's `[placement]`) for service user `user`."""
        return [
            (section, "auth_type", "password"),
            (section, "auth_url", self.identity_url),
            (section, "region_name", self.region),
            (section, "project_domain_name", "Default"),
            (section, "user_domain_name", "Default"),
            (section, "project_name", SERVICE_PROJECT),
            (section, "username", user),
            (section, "password", self.password("user:" + user)),
        ]


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form (`postgresql+psycopg2://`) of a libpq URL."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


@dataclass(frozen=True)
class IniEdit:
    """Keys to set in an existing ini file (comments, owner and mode kept)."""

    path: str
    keys: Sequence[tuple[str, str, str]]


@dataclass(frozen=True)
class FileWrite:
    """A file written whole."""

    path: str
    text: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"


@dataclass(frozen=True)
class LineEdit:
    """Lines of a non-ini file (memcached.conf, Django settings, uwsgi files with repeated
    keys) matching the regular expression `pattern` all replaced by `line`; appended if none."""

    path: str
    pattern: str
    line: str


Edit = IniEdit | FileWrite | LineEdit


@dataclass(frozen=True)
class Daemon:
    """An init script started on the original, and how to tell it is up: an HTTP answer on
    `port` (path `path`; a TCP connection if `path` is None), or for daemons without a port,
    a live process matching `process` (pgrep -f)."""

    name: str
    port: int | None = None
    path: str | None = "/"
    process: str | None = None
    #: Where its log is (shown when it does not come up).
    log: str | None = None
    #: How to start it, when not `service NAME start`.
    start: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """A Keystone service with its public, internal and admin endpoints (all the same URL,
    as packstack registers them). `url` is a template with `{address}`."""

    service: str
    type: str
    description: str
    url: str


def _no_edits(site: Site) -> Sequence[Edit]:
    return ()


@dataclass(frozen=True)
class Recipe:
    """One service of the plane (see the module doc)."""

    name: str
    packages: tuple[str, ...]
    #: debconf-set-selections lines answering every question so that nothing is configured.
    preseed: str = ""
    #: PostgreSQL role owning `databases` (its password is the site's "db:<role>").
    db_role: str | None = None
    databases: tuple[str, ...] = ()
    #: Keystone service user (in project `services` with role admin), password "user:<name>".
    user: str | None = None
    endpoints: tuple[Endpoint, ...] = ()
    #: Extra Keystone roles the service expects to exist (e.g. heat_stack_owner).
    roles: tuple[str, ...] = ()
    #: A Keystone domain and its admin user (heat's stack domain), password "user:<admin>".
    domain: tuple[str, str] | None = None
    configure: Callable[[Site], Sequence[Edit]] = _no_edits
    #: Shell run as root once the configs are written: migrations and other one-off setup.
    #: The site's secrets are not in it; `$1` is the original's address.
    sync: str = ""
    #: Started in this order after the syncs (and Keystone's bootstrap).
    daemons: tuple[Daemon, ...] = ()
    #: Shell run as root once the daemons are up (e.g. RabbitMQ's user); its stdin holds the
    #: site's passwords named in `after_start_secrets`, one a line.
    after_start: str = ""
    after_start_secrets: tuple[str, ...] = ()


def uwsgi_processes(path: str, processes: int) -> LineEdit:
    """Debian's uwsgi files set `processes` to 4-16, some twice: one value for all of them."""
    return LineEdit(path, r"processes\s*=.*", f"processes = {processes}")


def uwsgi_threads(path: str, threads: int) -> LineEdit:
    """uwsgi threads per process: every `threads` line of a Debian uwsgi file set to one value."""
    return LineEdit(path, r"threads\s*=.*", f"threads = {threads}")
