"""Preflight of phase `controllers`: state a service keeps on the node that serves a request
(the catalog's `node_local`, e.g. Glance's file store) must be on storage every controller
shares, or the operator must say it is; otherwise scaling out loses data behind the VIP.

A layout reader turns the original's config into the stores in use that keep files in a
directory; the probe (`hadeploy.facts.storage`) says which filesystem holds each directory.
A directory on a network or cluster filesystem passes; one on the node's own disk is refused
with what was seen, why it matters, and the two fixes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hadeploy.catalog import NodeLocal
from hadeploy.errors import CatalogError
from hadeploy.facts.storage import StorageSeen, directory_of, is_shared_filesystem, storage
from hadeploy.ops.base import Command, HostContext
from hadeploy.ops.checks import Requirement
from hadeploy.quoting import q
from hadeploy.render import get_ini_value
from hadeploy.render.ini import KEY, LINE, SECTION

DATADIR = "filesystem_store_datadir"
DATADIRS = "filesystem_store_datadirs"


@dataclass(frozen=True)
class Store:
    """A store in use that keeps its files in `path`: `setting` says how the config selects
    it, `path_setting` how it names the directory."""

    setting: str
    path_setting: str
    path: str


def ini_values(text: str, section: str, key: str) -> list[str]:
    """Every value of `key` in `[section]`, in order (oslo.config's multi-valued options repeat
    the key)."""
    values: list[str] = []
    current: str | None = None
    for line in LINE.findall(text):
        header = SECTION.match(line)
        if header:
            current = header.group("name").strip()
            continue
        match = KEY.match(line)
        if match and current == section and match.group("key").strip() == key:
            values.append(match.group("value").rstrip())
    return values


def _file_paths(text: str, section: str, entry: NodeLocal) -> list[tuple[str, str]]:
    """(how the config names it, directory) of a file store whose options are in `section`:
    `filesystem_store_datadirs` (several directories) wins over `filesystem_store_datadir`,
    whose default is the catalog's `default_path`."""
    several = [v for v in ini_values(text, section, DATADIRS) if v.strip()]
    if several:
        return [(f"[{section}] {DATADIRS} = {v}", directory_of(v)) for v in several]
    one = get_ini_value(text, section, DATADIR)
    if one:
        return [(f"[{section}] {DATADIR} = {one}", one)]
    return [(f"{DATADIR} not set (default {entry.default_path})", entry.default_path)]


def _legacy_section(text: str, *keys: str) -> str:
    """Where legacy store options are read: [glance_store], or [DEFAULT] where releases before
    glance_store (grizzly) kept them and [glance_store] has none of `keys`."""
    for section in ("glance_store", "DEFAULT"):
        if any(get_ini_value(text, section, key) is not None for key in keys):
            return section
    return "glance_store"


def glance_stores(text: str, entry: NodeLocal) -> list[Store]:
    """The stores of glance-api.conf `text` that keep images in a directory (types in
    `entry.types`).

    Multi-store (`[DEFAULT] enabled_backends = name:type, ...`): every enabled backend of
    such a type, since a client may upload to any enabled backend, each with the options in
    its own section. Legacy: the `default_store` (file when unset), where every upload goes,
    with its options in [glance_store] (or [DEFAULT] before glance_store existed).
    """
    enabled = (get_ini_value(text, "DEFAULT", "enabled_backends") or "").strip()
    if enabled:
        stores = []
        for item in enabled.split(","):
            name, colon, kind = (part.strip() for part in item.partition(":"))
            if not (name and colon and kind):
                raise ValueError(f"{entry.file}: [DEFAULT] enabled_backends = {enabled}: "
                                 f"{item.strip()!r} is not name:type")
            if kind in entry.types:
                setting = (f"[DEFAULT] enabled_backends = {enabled} (backend {name} is a "
                           f"{kind} store)")
                stores += [Store(setting, named, path)
                           for named, path in _file_paths(text, name, entry)]
        return stores
    section = _legacy_section(text, "default_store")
    default = (get_ini_value(text, section, "default_store") or "").strip()
    kind = default or "file"
    if kind not in entry.types:
        return []
    setting = (f"[{section}] default_store = {default}" if default
               else f"[{section}] default_store not set (default {kind})")
    options = _legacy_section(text, DATADIR, DATADIRS)
    return [Store(setting, named, path) for named, path in _file_paths(text, options, entry)]


@dataclass(frozen=True)
class Layout:
    """How a catalog `layout` is read: `stores` finds the stores in use that keep files from
    the config's `keys` (all the probe sends of it), `path_keys` name their directories."""

    stores: Callable[[str, NodeLocal], list[Store]]
    keys: tuple[str, ...]
    path_keys: tuple[str, ...]


LAYOUTS = {"glance_store": Layout(glance_stores, ("default_store", "enabled_backends",
                                                  DATADIR, DATADIRS), (DATADIR, DATADIRS))}


def local_stores(seen: StorageSeen, entry: NodeLocal) -> list[str]:
    """What `entry`'s config shows on a filesystem that is not shared: one line per store,
    naming the file, the settings and the filesystem (empty: all shared, or no such store)."""
    if seen.text is None:
        return []
    found = []
    for store in LAYOUTS[entry.layout].stores(seen.text, entry):
        real = seen.real_path(store.path)
        fstype = seen.filesystem(real)
        if is_shared_filesystem(fstype):
            continue
        where = f" (really {real})" if real.rstrip("/") != store.path.rstrip("/") else ""
        kind = f"a local filesystem ({fstype})" if fstype else "a filesystem of unknown type"
        found.append(f"{entry.file}: {store.setting}, {store.path_setting}{where} on {kind}")
    return found


def refusal(service: str, entry: NodeLocal, host: str, found: list[str]) -> str:
    """The message that stops the run: what was seen on `host`, why it matters, the fixes."""
    return "\n".join([
        f"{service} keeps its {entry.state} on the node that receives them, and the original "
        f"controller {host} keeps them on a filesystem of its own:",
        *(f"  {line}" for line in found),
        f"Scaled out to several controllers, {entry.why}.",
        f"Fix: {entry.fix}.",
        "Or, if that directory is already shared or replicated by other means, confirm it in "
        f"the inventory: [services] shared_storage = [\"{service}\"].",
    ])


@dataclass(frozen=True)
class SharedState(Requirement[StorageSeen]):
    """A `Requirement` whose failing command is shown as the one line `stop`: the refusal
    itself, several lines, is what the command prints (and what plans preview)."""

    stop: str = ""

    def apply(self, ctx: HostContext, seen: StorageSeen) -> list[Command]:
        problem = self.judge(ctx, seen) or "requirement not met"
        return [Command(f"echo {q(problem)} >&2; exit 1", summary=self.stop)]

    def preview(self, ctx: HostContext, seen: StorageSeen) -> str:
        lines = f"NOT MET: {self.judge(ctx, seen)}".splitlines()
        return "".join(f"  {line}\n" for line in lines)


def shared_state_check(service: str, entry: NodeLocal) -> SharedState:
    """The check that `service`'s `entry` state is on shared storage (run on the original)."""
    if entry.layout not in LAYOUTS:
        raise CatalogError(f"catalog services.{service}.node_local: unknown layout "
                           f"{entry.layout!r}; known layouts are {', '.join(sorted(LAYOUTS))}")

    def judge(ctx: HostContext, seen: StorageSeen) -> str | None:
        found = local_stores(seen, entry)
        return refusal(service, entry, ctx.node.name, found) if found else None

    layout = LAYOUTS[entry.layout]
    evidence = storage(entry.file, layout.keys, layout.path_keys, entry.default_path)
    return SharedState(f"shared-state:{service}:{entry.file}", evidence, judge,
                       f"{service}: {entry.state} on storage every controller shares",
                       stop=f"stop: {service}'s {entry.state} are on one node's disk only")

