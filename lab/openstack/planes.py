"""The control planes an original controller can be provisioned with, as lists of recipes,
and the package lists the lab's offline repository must hold for them."""

from __future__ import annotations

from dataclasses import dataclass

from lab import aptrepo
from lab.openstack.recipe import Recipe
from lab.openstack.services.compute import NOVA
from lab.openstack.services.dashboard import HORIZON
from lab.openstack.services.identity import KEYSTONE
from lab.openstack.services.image import GLANCE
from lab.openstack.services.messaging import MEMCACHED, RABBITMQ
from lab.openstack.services.network import NEUTRON
from lab.openstack.services.objectstore import SWIFT
from lab.openstack.services.orchestration import HEAT
from lab.openstack.services.placement import PLACEMENT
from lab.openstack.services.volume import CINDER

#: Installed with every plane: the openstack CLI and the PostgreSQL driver (python3-oslo.db
#: depends on it too). PostgreSQL itself is in the hosts' lower layer.
COMMON_PACKAGES: tuple[str, ...] = ("python3-openstackclient", "python3-psycopg2")


@dataclass(frozen=True)
class Plane:
    """A named list of recipes; `cache` names its saved installations' directory."""

    name: str
    recipes: tuple[Recipe, ...]
    cache: str

    @property
    def packages(self) -> tuple[str, ...]:
        """Every package the plane installs, in recipe order, without repeats."""
        names = [p for r in self.recipes for p in r.packages] + list(COMMON_PACKAGES)
        return tuple(dict.fromkeys(names))

    @property
    def preseed(self) -> str:
        """All the recipes' debconf answers."""
        return "".join(r.preseed for r in self.recipes)

    @property
    def repo_packages(self) -> tuple[str, ...]:
        """`repo_packages` for a lab whose hosts can be provisioned with this plane."""
        return (*aptrepo.DEFAULT_PACKAGES, *self.packages)


#: Keystone and Glance only: what the lab's quick tests and the demo provision.
KEYSTONE_GLANCE = Plane("keystone-glance", (KEYSTONE, GLANCE), cache="openstack")

#: What an original controller and the new controllers install for KEYSTONE_GLANCE (Debian 12
#: package names).
OPENSTACK_PACKAGES: tuple[str, ...] = KEYSTONE_GLANCE.packages
#: `repo_packages` for a lab whose hosts can become KEYSTONE_GLANCE controllers.
LAB_REPO_PACKAGES: tuple[str, ...] = KEYSTONE_GLANCE.repo_packages

#: The whole control plane packstack leaves on a single-node controller, in start order: the
#: message bus and cache first, then Keystone, then every API.
FULL_PLANE = Plane(
    "full",
    (RABBITMQ, MEMCACHED, KEYSTONE, GLANCE, PLACEMENT, NOVA, NEUTRON, CINDER, HEAT, SWIFT,
     HORIZON),
    cache="openstack-full",
)
#: What an original controller (and new controllers) install for FULL_PLANE.
FULL_PLANE_PACKAGES: tuple[str, ...] = FULL_PLANE.packages
#: What an inventory balancing the full plane names: every API of FULL_PLANE (hadeploy's
#: catalog names).
FULL_PLANE_SERVICES: tuple[str, ...] = ("keystone", "glance", "placement", "nova", "novnc",
                                        "neutron", "cinder", "heat", "swift", "horizon")
#: `repo_packages` for a lab whose hosts can become FULL_PLANE controllers.
FULL_PLANE_REPO_PACKAGES: tuple[str, ...] = FULL_PLANE.repo_packages
