"""Directory trees copied from one host to another (e.g. /etc/keystone to a new controller).

The copy goes through the workstation, so controllers need no SSH trust between them: the
source runs `tar -c`, the engine carries the stream (`Command.stdin_from`), the destination
extracts it into a staging directory beside the target and swaps it into place with two
renames. GNU tar records owner and group *names* and, extracting as root, gives each file
the destination's uid/gid for those names: uids differ between hosts (keystone is 103 on one,
104 on another), so a `--numeric-owner` copy would hand files to the wrong user. The apply
script refuses to extract when a name is missing on the destination, because tar would then
silently fall back to the source's number.

Whether the copy is needed, and whether it worked, is decided by comparing manifests: one
line per entry with path, type, owner and group names, mode, symlink target, and for files
sha256 and mtime (`hadeploy.facts.trees`). The destination's manifest is the operation's
fact; the source's comes from `source_probes`, which the engine runs on the source host and
hands back in `Probe.sources`. The same comparison after the copy proves source and copy are equal.

Swap and rollback, with every intermediate state recoverable from the journal record:

    target  --rename-->  .hadeploy.NAME.old.RUN   (aside: same file system, atomic)
    staging --rename-->  target
    aside   --cp -a---> BACKUP.part --rename--> BACKUP  (backup root may be another fs)
    rm -rf aside

Undo restores BACKUP when it exists (it is complete), else the aside, else nothing was
replaced; a tree that did not exist before is removed.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, replace

from hadeploy import framing
from hadeploy.facts import Fact, Probe
from hadeploy.facts.trees import Manifest, manifest_script, parse_manifest
from hadeploy.ops.base import Command, HostContext, Operation, Record, SourceRead, private_dir
from hadeploy.quoting import q

_GLOB = re.compile(r"[*?\[\]\\\n\t]")


def _check_relative(kind: str, rel: str) -> None:
    if (not rel or rel.startswith("/") or posixpath.normpath(rel) != rel or rel == "."
            or rel.split("/")[0] == ".." or _GLOB.search(rel)):
        raise ValueError(f"{kind} {rel!r}: give a plain relative path inside the tree "
                         "(no wildcards, no '..')")


def check_tree_path(what: str, path: str, below_top: bool = False) -> None:
    """Refuse a directory path that commands swapping or deleting trees must never get: not
    absolute, not normalised, a newline, `/`, and with `below_top` a top-level directory
    such as /etc. `what` names the path in the error."""
    if (not path.startswith("/") or posixpath.normpath(path) != path or path == "/"
            or "\n" in path or (below_top and path.count("/") < 2)):
        where = "below a top-level directory" if below_top else "other than /"
        raise ValueError(f"{what}: give an absolute, normalised directory {where}")


def differences(source: Manifest, dest: Manifest, rewritten: tuple[str, ...] = ()) -> list[str]:
    """What differs between two trees, one line per entry (empty when they are equal).

    `rewritten` files are expected to differ in content (host-specific keys are edited after
    the copy): their sha256 and mtime are not compared, everything else is.
    """
    out: list[str] = []
    if dest.state != "dir":
        out.append(f"destination is {dest.state}")
    for rel in sorted(source.entries.keys() | dest.entries.keys()):
        want, have = source.entries.get(rel), dest.entries.get(rel)
        if have is None and want is not None:
            out.append(f"+ {rel}: {want.line()}")
        elif want is None and have is not None:
            out.append(f"- {rel}: {have.line()} (not on the source)")
        elif want is not None and have is not None:
            if rel in rewritten:
                want = replace(want, sha256="", mtime=None)
                have = replace(have, sha256="", mtime=None)
            if want != have:
                out.append(f"~ {rel}: {have.line()} -> {want.line()}")
    return out


def source_tar_script(path: str, exclude: tuple[str, ...] = ()) -> str:
    """Script on the source host writing the tree as a tar stream (owners by name) to stdout."""
    excludes = "".join(f" --exclude={q('./' + rel)}" for rel in exclude)
    anchored = " --anchored --no-wildcards" if exclude else ""
    return f"LC_ALL=C tar -C {q(path)}{anchored}{excludes} -cpf - ."


@dataclass(frozen=True)
class TreePaths:
    """The paths a tree copy uses beside its target and in the backup root."""

    target: str
    stage: str
    aside: str
    trash: str
    restore: str
    backup: str

    @classmethod
    def of(cls, target: str, run_id: str, backup: str) -> TreePaths:
        """Paths for copying to `target` in run `run_id` (siblings: same file system)."""
        parent, name = posixpath.split(target)
        sibling = f"{parent}/.hadeploy.{name}"
        return cls(target, f"{sibling}.new.{run_id}", f"{sibling}.old.{run_id}",
                   f"{sibling}.trash.{run_id}", f"{sibling}.restore.{run_id}", backup)


def _restorecon(el: bool) -> str:
    """EL only: give the new tree the SELinux labels of its path (tar does not carry them)."""
    if not el:
        return ""
    return 'if command -v restorecon >/dev/null 2>&1; then restorecon -R "$target"; fi\n'


def _names_check(owners: tuple[str, ...], groups: tuple[str, ...]) -> str:
    """Refuse to extract when an owner name is missing (tar would fall back to its number)."""
    if not owners and not groups:
        return ""
    users = " ".join(q(o) for o in owners) or "''"
    grps = " ".join(q(g) for g in groups) or "''"
    return (
        'missing=""\n'
        f'for u in {users}; do [ -z "$u" ] || getent passwd "$u" >/dev/null 2>&1 '
        '|| missing="$missing user $u,"; done\n'
        f'for g in {grps}; do [ -z "$g" ] || getent group "$g" >/dev/null 2>&1 '
        '|| missing="$missing group $g,"; done\n'
        'if [ -n "$missing" ]; then\n'
        '  echo "$target: owners of the source tree do not exist here:${missing%,}. Create '
        "them first (install the service's package) so the copy keeps owners by name; "
        'nothing was changed" >&2\n'
        "  exit 1\n"
        "fi\n"
    )


def _vars(paths: TreePaths) -> str:
    return (f"target={q(paths.target)}\nstage={q(paths.stage)}\naside={q(paths.aside)}\n"
            f"trash={q(paths.trash)}\nrestore={q(paths.restore)}\nbackup={q(paths.backup)}\n")


def tree_swap_script(paths: TreePaths, exclude: tuple[str, ...] = (),
                     owners: tuple[str, ...] = (), groups: tuple[str, ...] = (),
                     el: bool = False) -> str:
    """Script on the destination: extract the tar on stdin beside the target and swap it in.

    The previous tree (or file) is kept: renamed aside (atomic, same file system), then
    copied to the backup root and removed. Safe to re-run after an interruption: an aside or
    a backup left by an earlier attempt is the original and is never overwritten.
    """
    keep = ""
    for rel in exclude:
        r = q(rel)
        keep += (f'if {{ [ -e "$target"/{r} ] || [ -L "$target"/{r} ]; }} && '
                 f'[ -d "$(dirname "$stage"/{r})" ]; then cp -a "$target"/{r} "$stage"/{r}; fi\n')
    return (
        "set -eu\n"
        + _vars(paths)
        + "trap 'rm -rf \"$stage\" \"$stage.tar\" \"$trash\"' EXIT\n"
        "trap 'exit 1' HUP INT TERM PIPE\n"
        + _names_check(owners, groups)
        + 'mkdir -p "$(dirname "$target")"\n'
        'rm -rf "$stage" "$stage.tar" "$trash"\n'
        # The whole archive first, checked against the size and sha256 the engine sent ahead
        # of it: a cut-off stream never reaches the tree.
        + framing.receive_carried('"$stage.tar"', "the copy of $target")
        + 'mkdir -m 700 "$stage"\n'
        'tar -C "$stage" -x -p --same-owner -f "$stage.tar"\n'
        'rm -f "$stage.tar"\n'
        + keep
        + 'if [ -e "$target" ] || [ -L "$target" ]; then\n'
        '  if [ -e "$aside" ] || [ -e "$backup" ]; then mv -T "$target" "$trash"\n'
        '  else mv -T "$target" "$aside"; fi\n'
        "fi\n"
        'mv -T "$stage" "$target"\n'
        + _restorecon(el)
        + 'if [ -e "$aside" ] || [ -L "$aside" ]; then\n'
        '  if [ ! -e "$backup" ]; then\n'
        + private_dir('"$(dirname "$backup")"') +
        '    rm -rf "$backup.part"\n'
        '    cp -a "$aside" "$backup.part"\n'
        '    mv -T "$backup.part" "$backup"\n'
        "  fi\n"
        '  rm -rf "$aside"\n'
        "fi\n"
        'rm -rf "$trash"\n'
    )


def tree_undo_script(paths: TreePaths, existed: bool, el: bool = False) -> str:
    """Script restoring the tree as it was before the run (see the module docstring)."""
    head = "set -eu\n" + _vars(paths) + 'rm -rf "$stage" "$trash" "$restore"\n'
    if not existed:
        return head + 'rm -rf "$target"\n'
    return (
        head
        + 'if [ -e "$backup" ]; then\n'
        '  cp -a "$backup" "$restore"\n'
        '  if [ -e "$target" ] || [ -L "$target" ]; then mv -T "$target" "$trash"; fi\n'
        '  mv -T "$restore" "$target"\n'
        '  rm -rf "$trash" "$aside" "$backup"\n'
        'elif [ -e "$aside" ] || [ -L "$aside" ]; then\n'
        '  if [ -e "$target" ] || [ -L "$target" ]; then mv -T "$target" "$trash"; fi\n'
        '  mv -T "$aside" "$target"\n'
        '  rm -rf "$trash"\n'
        "fi\n"
        + _restorecon(el)
    )


@dataclass(frozen=True)
class TreesSeen:
    """The destination's manifest and the source's (None: no output to read, as in an
    offline plan)."""

    dest: Manifest | None
    source: Manifest | None

    def destination(self) -> Manifest:
        """The destination's manifest; ValueError when the probe printed none."""
        if self.dest is None:
            raise ValueError("no tree manifest in the probe output")
        return self.dest


@dataclass(frozen=True)
class TreeCopied(Operation[TreesSeen]):
    """The directory `path` on this host equals `path` on `source_host`.

    Equal means: same entries (minus `exclude`, which is neither copied nor compared, and
    whatever the destination has there is kept), same owner and group *names*, modes,
    symlink targets, and for files the same content and mtime (`rewritten` files: content
    and mtime may differ, since a later operation edits them per host).
    """

    op_id: str
    source_host: str
    path: str
    exclude: tuple[str, ...] = ()
    rewritten: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_tree_path(f"tree path {self.path!r}", self.path)
        for rel in self.exclude:
            _check_relative("exclude", rel)
        for rel in self.rewritten:
            _check_relative("rewritten", rel)

    def fact(self, ctx: HostContext) -> Fact[TreesSeen]:
        return Fact(manifest_script(self.path, self.exclude), self._parse)

    def _parse(self, probe: Probe) -> TreesSeen:
        dest = parse_manifest(probe.stdout) if probe.stdout else None
        if not probe.sources:
            return TreesSeen(dest, None)
        source = parse_manifest(probe.sources[0])
        if source.state != "dir":
            raise ValueError(f"the source {self.source_host}:{self.path} is {source.state}, "
                             "not a directory: nothing to copy")
        return TreesSeen(dest, source)

    def source_probes(self, ctx: HostContext) -> tuple[SourceRead, ...]:
        return (SourceRead(self.source_host, manifest_script(self.path, self.exclude)),)

    def done(self, ctx: HostContext, seen: TreesSeen) -> bool:
        if seen.source is None:
            raise ValueError(f"no manifest of {self.source_host}:{self.path} to compare with")
        return not differences(seen.source, seen.destination(), self.rewritten)

    def _paths(self, ctx: HostContext) -> TreePaths:
        return TreePaths.of(self.path, ctx.run_id, ctx.backup_path(self.path))

    def intent(self, ctx: HostContext, seen: TreesSeen) -> Record:
        paths = self._paths(ctx)
        return {"kind": "tree", "path": self.path, "source": self.source_host,
                "existed": seen.destination().state != "absent", "backup": paths.backup,
                "stage": paths.stage, "aside": paths.aside, "trash": paths.trash,
                "restore": paths.restore}

    def apply(self, ctx: HostContext, seen: TreesSeen) -> list[Command]:
        source = seen.source
        owners = source.owners() if source else ()
        groups = source.groups() if source else ()
        script = tree_swap_script(self._paths(ctx), self.exclude, owners, groups,
                                  ctx.profile.family == "el")
        return [Command(script, stdin_from=SourceRead(self.source_host,
                                                      source_tar_script(self.path, self.exclude)),
                        summary=f"copy {self.source_host}:{self.path} to {self.path} "
                                "(tar, owners by name, staged then swapped in)")]

    def preview(self, ctx: HostContext, seen: TreesSeen) -> str:
        if seen.source is None:
            return f"  copy {self.source_host}:{self.path}\n"
        return "".join(f"  {line}\n"
                       for line in differences(seen.source, seen.destination(), self.rewritten))

    def title(self) -> str:
        return f"tree {self.path} from {self.source_host}"


def undo_tree(ctx: HostContext, record: Record) -> list[Command]:
    """Put the tree back as it was before the run, from the journal record alone."""
    paths = TreePaths(record["path"], record["stage"], record["aside"], record["trash"],
                      record["restore"], record["backup"])
    existed = bool(record.get("existed"))
    summary = (f"restore {paths.target} from {paths.backup}" if existed
               else f"remove {paths.target} (it did not exist before)")
    return [Command(tree_undo_script(paths, existed, ctx.profile.family == "el"),
                    summary=summary)]
