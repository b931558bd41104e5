"""The inventory: one TOML file describing a deployment, validated up front.

`load_inventory(path)` returns a frozen `Inventory` or raises `InventoryError` listing every
problem, each with the key and the fix. See README.md for the reference of every key.
`check_local_files(inv)` checks the workstation files it names, before anything connects.
"""

from hadeploy.inventory.load import load_inventory
from hadeploy.inventory.local import check_local_files
from hadeploy.inventory.model import (
    HaproxySettings,
    Inventory,
    KeepalivedSettings,
    Monitor,
    Node,
    OpenStackSettings,
    RcFile,
    SshSettings,
    Vip,
)

__all__ = [
    "HaproxySettings",
    "Inventory",
    "KeepalivedSettings",
    "Monitor",
    "Node",
    "OpenStackSettings",
    "RcFile",
    "SshSettings",
    "Vip",
    "check_local_files",
    "load_inventory",
]
