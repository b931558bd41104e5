"""Horizon (Debian's openstack-dashboard on apache2, at /horizon on port 80 of every address)
with its settings naming the original: OPENSTACK_HOST, memcached on the original as the cache
and session store, and an explicit SECRET_KEY in local_settings.py (Debian's default keeps a
generated key in /var/lib, which a copy of /etc/openstack-dashboard would not carry)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.openstack.recipe import Daemon, Edit, FileWrite, LineEdit, Recipe, Site

LOCAL_SETTINGS = "/etc/openstack-dashboard/local_settings.py"
#: Debian's drop-in that sets CACHES (to local memory): replaced by memcached.
CACHE_SETTINGS = "/etc/openstack-dashboard/local_settings.d/_0006_debian_cache.py"


def _configure(site: Site) -> Sequence[Edit]:
    secret = site.password("horizon-secret-key")
    return (
        LineEdit(LOCAL_SETTINGS, r"#?\s*ALLOWED_HOSTS\s*=.*", "ALLOWED_HOSTS = ['*']"),
        LineEdit(LOCAL_SETTINGS, r"OPENSTACK_HOST\s*=.*", f'OPENSTACK_HOST = "{site.address}"'),
        LineEdit(LOCAL_SETTINGS, r"OPENSTACK_KEYSTONE_URL\s*=.*",
                 'OPENSTACK_KEYSTONE_URL = "http://%s:5000/v3" % OPENSTACK_HOST'),
        # Debian's two lines `SECRET_KEY = secret_key.generate_or_read_from_file(\n path)`.
        LineEdit(LOCAL_SETTINGS, r"SECRET_KEY\s*=.*\(\n.*\)", f"SECRET_KEY = '{secret}'"),
        FileWrite(CACHE_SETTINGS, (
            "# hadeploy lab: memcached on the original, as packstack configures Horizon\n"
            "SESSION_ENGINE = 'django.contrib.sessions.backends.cache'\n"
            "CACHES = {\n"
            "    'default': {\n"
            "        'BACKEND': 'django.core.cache.backends.memcached.PyMemcacheCache',\n"
            f"        'LOCATION': '{site.address}:11211',\n"
            "    }\n"
            "}\n"
        ), "root", "root", "0644"),
    )


HORIZON = Recipe(
    name="horizon",
    packages=("openstack-dashboard-apache", "python3-pymemcache"),
    # No vhost takeover, no SSL: Debian then serves Horizon at /horizon on apache's
    # default site, next to Debian's default page.
    preseed="""\
openstack-dashboard-apache horizon/activate_vhost boolean false
openstack-dashboard-apache horizon/use_ssl boolean false
openstack-dashboard horizon/allowed-hosts string *
""",
    configure=_configure,
    # That postinst also enables default-ssl without enabling mod_ssl: apache2 then refuses
    # to start ("Invalid command 'SSLEngine'").
    sync="a2dissite -q default-ssl",
    daemons=(Daemon("apache2", 80, "/horizon/auth/login/", log="/var/log/apache2/*error*"),),
)
