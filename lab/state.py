"""lab.json: what a running (or half-built) lab consists of, so any process can find it again.

It is rewritten after every process the lab starts, before anything else happens, so that
`Lab.down()` can always find and stop everything, even after a crash halfway through `up`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.procs import ProcRef

FORMAT = 1


@dataclass
class HostState:
    """One simulated host: its address and the processes holding its namespaces."""

    name: str
    address: str
    spawner: ProcRef | None = None  # `unshare`, parent of the host's init in the root namespace
    init: ProcRef | None = None  # the host's PID 1 (tini), seen from the root namespace
    booted: bool = False  # its boot script completed: mounts are private, sshd started

    def to_json(self) -> dict[str, Any]:
        """The form stored in lab.json."""
        return {
            "name": self.name,
            "address": self.address,
            "spawner": self.spawner.to_json() if self.spawner else None,
            "init": self.init.to_json() if self.init else None,
            "booted": self.booted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostState:
        """Read back what `to_json` wrote."""
        return cls(
            name=str(data["name"]),
            address=str(data["address"]),
            spawner=ProcRef.from_json(data["spawner"]) if data.get("spawner") else None,
            init=ProcRef.from_json(data["init"]) if data.get("init") else None,
            booted=bool(data.get("booted")),
        )


@dataclass
class LabState:
    """Everything `Lab.load` and `Lab.down` need to know about a lab."""

    state_dir: Path
    cache_dir: Path
    repo_dir: Path
    base_dir: Path | None = None
    core: ProcRef | None = None  # holds the bridge's network namespace and the staging mounts
    hosts: dict[str, HostState] = field(default_factory=dict)
    packages_bare: list[str] = field(default_factory=list)
    repo_packages: list[str] = field(default_factory=list)
    complete: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def path(self) -> Path:
        """Where this state is stored."""
        return self.state_dir / "lab.json"

    def to_json(self) -> dict[str, Any]:
        """The whole document stored in lab.json."""
        return {
            "format": FORMAT,
            "state_dir": str(self.state_dir),
            "cache_dir": str(self.cache_dir),
            "repo_dir": str(self.repo_dir),
            "base_dir": str(self.base_dir) if self.base_dir else None,
            "core": self.core.to_json() if self.core else None,
            "hosts": [
                # The disk (overlay upper and work dirs) is where hosts.host_dir puts it; it is
                # written here for people and tools reading lab.json.
                {**host.to_json(), "disk": str(self.state_dir / "hosts" / host.name / "disk")}
                for host in self.hosts.values()
            ],
            "packages_bare": list(self.packages_bare),
            "repo_packages": list(self.repo_packages),
            "complete": self.complete,
        }

    def save(self) -> None:
        """Write lab.json atomically (threads booting hosts in parallel all call this)."""
        with self._lock:
            tmp = self.path.with_name(f".lab.json.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
            tmp.replace(self.path)

    @classmethod
    def load(cls, state_dir: Path) -> LabState:
        """Read `state_dir/lab.json`; a missing or unreadable file is a `LabError`."""
        path = state_dir / "lab.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise LabError(f"{path}: no lab here (nothing was brought up in {state_dir})") from err
        except (OSError, ValueError) as err:
            raise LabError(f"{path}: unreadable ({err}); remove the lab by hand") from err
        if data.get("format") != FORMAT:
            raise LabError(f"{path}: format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            state_dir=Path(data["state_dir"]),
            cache_dir=Path(data["cache_dir"]),
            repo_dir=Path(data["repo_dir"]),
            base_dir=Path(data["base_dir"]) if data.get("base_dir") else None,
            core=ProcRef.from_json(data["core"]) if data.get("core") else None,
            hosts={h["name"]: HostState.from_json(h) for h in data.get("hosts", [])},
            packages_bare=[str(p) for p in data.get("packages_bare", [])],
            repo_packages=[str(p) for p in data.get("repo_packages", [])],
            complete=bool(data.get("complete")),
        )
