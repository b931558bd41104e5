"""Keystone under uwsgi with fernet and credential keys, bound to every address as packstack's
httpd vhost is (Debian keeps that bind in /etc/default/keystone, outside /etc/keystone)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import KEYSTONE_PORT, Daemon, Edit, FileWrite, IniEdit, Recipe, Site

#: uwsgi processes; Debian's 8 cost ~0.7 GiB more.
KEYSTONE_WORKERS = 2
#: uwsgi threads per process. Debian's keystone-uwsgi.ini has 32, and something Keystone
#: loads shares an eventlet semaphore across them: under load a thread it had not used yet
#: failed with `greenlet.error: cannot switch to a different thread`, resetting a
#: connection (the full plane's service registration, ten tries 10 s apart, with another
#: lab beside it) or never answering one (a new controller's Keystone). Keystone's own
#: uwsgi example runs processes, not threads; the lab's operator does the same.
KEYSTONE_THREADS = 1


def _configure(site: Site) -> Sequence[Edit]:
    return (
        IniEdit("/etc/keystone/keystone.conf", [
            ("database", "connection", site.db_connection("keystone", "keystone")),
            ("token", "provider", "fernet"),
        ]),
        IniEdit("/etc/keystone/keystone-uwsgi.ini", [
            ("uwsgi", "processes", str(KEYSTONE_WORKERS)),
            ("uwsgi", "threads", str(KEYSTONE_THREADS)),
        ]),
        FileWrite("/etc/default/keystone", (
            "# hadeploy lab (packstack-style original controller): Keystone's uwsgi listens on\n"
            "# every address. Debian's init script reads its listen address from here, not\n"
            "# from /etc/keystone.\n"
            f'DAEMON_ARGS="--http-socket 0.0.0.0:{KEYSTONE_PORT} '
            '--ini /etc/keystone/keystone-uwsgi.ini"\n'
        )),
    )


KEYSTONE = Recipe(
    name="keystone",
    packages=("keystone",),
    preseed="""\
keystone keystone/configure_db boolean false
keystone keystone/create-admin-tenant boolean false
keystone keystone/register-endpoint boolean false
""",
    db_role="keystone",
    databases=("keystone",),
    configure=_configure,
    # As the keystone user: a root-owned keystone.log makes uwsgi die.
    sync="""\
install -d -o keystone -g keystone -m 0700 /etc/keystone/fernet-keys /etc/keystone/credential-keys
install -d -o keystone -g adm -m 0750 /var/log/keystone
ks() { runuser -u keystone -- keystone-manage "$@"; }
ks db_sync & a=$!
ks fernet_setup --keystone-user keystone --keystone-group keystone & b=$!
ks credential_setup --keystone-user keystone --keystone-group keystone & c=$!
wait $a; wait $b; wait $c
""",
    daemons=(Daemon("keystone", KEYSTONE_PORT, "/v3"),),
)
