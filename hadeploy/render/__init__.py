"""Pure functions from inventory + catalog to file text.

Nothing here does I/O: the same text is shown by `--dry-run`, checked by `haproxy -c` /
`keepalived -t`, and uploaded by the engine.
"""

from hadeploy.render.haproxy import balanced_proxies, render_haproxy_cfg
from hadeploy.render.ini import get_ini_value, set_ini_value
from hadeploy.render.keepalived import (
    HAPROXY_CHECK_PATH,
    render_haproxy_check_script,
    render_keepalived_conf,
)
from hadeploy.render.shellrc import get_shell_var, set_shell_var
from hadeploy.render.sysctl import NONLOCAL_BIND_KEY, render_sysctl_conf
from hadeploy.render.urls import rehost

__all__ = [
    "HAPROXY_CHECK_PATH",
    "NONLOCAL_BIND_KEY",
    "balanced_proxies",
    "get_ini_value",
    "get_shell_var",
    "rehost",
    "render_haproxy_cfg",
    "render_haproxy_check_script",
    "render_keepalived_conf",
    "render_sysctl_conf",
    "set_ini_value",
    "set_shell_var",
]
