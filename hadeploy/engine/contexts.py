"""What the engine knows about each host, and the `HostContext` it hands operations."""

from __future__ import annotations

from collections.abc import Mapping

from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, live_changes
from hadeploy.ops.base import HostContext
from hadeploy.platforms import Profile, profile_for


class HostContexts:
    """Nodes, detected facts, platform profiles and secrets, per host."""

    def __init__(self, nodes: Mapping[str, Node], platform: str,
                 secrets: Mapping[str, str]) -> None:
        self.nodes = dict(nodes)
        self.platform = platform
        self.secrets = dict(secrets)
        self.facts: dict[str, dict[str, str]] = {}
        self.profiles: dict[str, Profile] = {}

    def apply_facts(self, facts: Mapping[str, Mapping[str, str]]) -> None:
        """Build each host's profile from its facts (platform and init system)."""
        for host, values in facts.items():
            self.facts[host] = dict(values)
            platform = self.platform if self.platform != "auto" else values.get("platform", "")
            init = values.get("init")
            self.profiles[host] = profile_for(platform or "debian",
                                              "systemd" if init == "systemd" else
                                              "sysv" if init == "sysv" else None)

    def assume_profiles(self, hosts: tuple[str, ...]) -> None:
        """Profiles from the inventory only (offline plans)."""
        platform = self.platform if self.platform != "auto" else "debian"
        for host in hosts:
            self.profiles.setdefault(host, profile_for(platform))

    def context(self, step_id: str, host: str, journal: Journal | None,
                detail: bool = False) -> HostContext:
        """The context of `host` in step `step_id` (of `journal`'s run, or of a plan)."""
        changed = journal.changed_steps(host) if journal else frozenset()
        entry = next((s.hosts.get(host) for s in journal.steps if s.id == step_id),
                     None) if journal else None
        earlier = {c["op"]: c["record"] for c in live_changes(entry)} if entry else {}
        return HostContext(node=self.nodes[host], profile=self.profiles[host],
                           run_id=journal.run_id if journal else "plan", step_id=step_id,
                           secrets=self.secrets, changed_steps=changed, detail=detail,
                           earlier=earlier)
