"""A real original controller in the lab, left the way packstack leaves a single-node
controller, from Debian 12's own packages (release "modern", platform "debian").

    lab = Lab.up(LAB_HOSTS, state_dir, repo_packages=LAB_REPO_PACKAGES)
    original = provision_original(lab, "ctl1", state_dir)        # Keystone + Glance
    lab.hosts["ctl1"].exec(f". {original.admin_rc} && openstack token issue")
    prepare_new_controller(lab, "ctl2")       # checks only: a bare host is what is needed

`plane=` chooses what runs on it (lab.openstack.planes): KEYSTONE_GLANCE (the default) or
FULL_PLANE. Each service is a recipe (lab.openstack.services.*, see recipe.Recipe).

What `provision_original` leaves on the host (address A, e.g. 198.18.0.14):

- PostgreSQL (already in the workstation's root file system, so in every host's lower layer)
  listening on localhost and A, `pg_hba.conf` allowing 198.18.0.0/24 with passwords; one
  database per service (nova: nova_api, nova, nova_cell0), owned by a role of the service's
  name. Database URLs name A (`postgresql+psycopg2://keystone:...@A/keystone`), as packstack
  writes its controller's address: copied configs reach the same database from anywhere.
- Keystone under uwsgi (Debian's init script), 2 worker processes, fernet and credential
  keys, bootstrapped with user/project/role `admin`, region `RegionOne` and identity
  endpoints `http://A:5000`. **Bind: all addresses**, from `DAEMON_ARGS` in
  /etc/default/keystone (Debian keeps it outside /etc/keystone).
- Every other service's user in project `services` with role admin, and its service with
  public, internal and admin endpoints on A with the real paths; its config files name A
  (bind keys, `[keystone_authtoken]`, transport URL...): the keys hadeploy rewrites.
- `/root/keystonerc_admin` (mode 0600) in packstack's format, `OS_AUTH_URL=http://A:5000/v3`.

Every password is random for each provisioning and never printed: dataclasses hide them from
their repr, and they reach the host only through standard input or files, never a command line.

How it is done: debconf is preseeded so dbconfig-common and the packages' own setup
configure nothing; a host `/usr/sbin/policy-rc.d` (exit 101) blocks every service start
during `apt-get install` (glance-api pulls in udev; Keystone would start unconfigured and
crash-loop) and is removed afterwards; then everything is configured by hand, each daemon
started with its init script and its start verified by polling its port (init scripts
report success for daemons that died at once). The installation is cached as a saved
overlay upper layer (lab.openstack.install): ~5 s to lay in instead of ~60 s of apt-get for
KEYSTONE_GLANCE.
"""

from lab.openstack.hostops import host_pss_bytes
from lab.openstack.keystone import ADMIN_RC
from lab.openstack.original import (
    OriginalController,
    Progress,
    prepare_new_controller,
    provision_original,
)
from lab.openstack.planes import (
    FULL_PLANE,
    FULL_PLANE_PACKAGES,
    FULL_PLANE_REPO_PACKAGES,
    KEYSTONE_GLANCE,
    LAB_REPO_PACKAGES,
    OPENSTACK_PACKAGES,
    Plane,
)
from lab.openstack.recipe import REGION, SERVICE_PROJECT

__all__ = [
    "ADMIN_RC", "FULL_PLANE", "FULL_PLANE_PACKAGES", "FULL_PLANE_REPO_PACKAGES",
    "KEYSTONE_GLANCE",
    "LAB_REPO_PACKAGES", "OPENSTACK_PACKAGES", "REGION", "SERVICE_PROJECT",
    "OriginalController", "Plane", "Progress", "host_pss_bytes", "prepare_new_controller",
    "provision_original",
]
