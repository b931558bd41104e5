"""RabbitMQ and memcached: the message bus and token cache the other services use on the
original (packstack runs both there)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, LineEdit, Recipe, Site

RABBIT_PORT = 5672
MEMCACHED_PORT = 11211


def _memcached(site: Site) -> Sequence[Edit]:
    # Debian listens on localhost only; the services reach it on the original's address.
    return (LineEdit("/etc/memcached.conf", r"-l .*", f"-l 127.0.0.1,{site.address}"),)


RABBITMQ = Recipe(
    name="rabbitmq",
    packages=("rabbitmq-server",),
    # Its postinst made an Erlang cookie, which the saved installation leaves out: a new one.
    sync="""\
(umask 077; openssl rand -base64 -out /var/lib/rabbitmq/.erlang.cookie 42)
chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
chmod 0400 /var/lib/rabbitmq/.erlang.cookie
""",
    daemons=(Daemon("rabbitmq-server", RABBIT_PORT, path=None, log="/var/log/rabbitmq/*.log"),),
    # The services' user (rabbitmqctl reads the password from stdin when it is not given);
    # RabbitMQ's default guest/guest account goes: nothing here uses it.
    after_start="""\
IFS= read -r password
printf '%s\\n' "$password" | rabbitmqctl add_user openstack >/dev/null
rabbitmqctl set_permissions openstack '.*' '.*' '.*' >/dev/null
rabbitmqctl delete_user guest >/dev/null
""",
    after_start_secrets=("rabbit",),
)

MEMCACHED = Recipe(
    name="memcached",
    packages=("memcached",),
    configure=_memcached,
    daemons=(Daemon("memcached", MEMCACHED_PORT, path=None),),
)
