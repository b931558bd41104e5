"""Files on a host: whole files (rendered) and in-place edits (ini keys, rc variables).

Every write is atomic and validated: a temp file created owner-only in the target's own
directory receives the content on stdin, is validated (e.g. `haproxy -c -f`), gets its
owner and mode, and only then is renamed over the target. The previous version is copied
to the run's backup directory first, which is what rollback restores.

Modes: the temp file is mktemp's 0600 while the content arrives (a config with a password
is never readable by others, not even for an instant); backups keep the file's mode
(`cp -a`) in directories created 0700, since they hold old secrets too.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from hadeploy import framing
from hadeploy.facts import Fact
from hadeploy.facts.files import FileState, file_state
from hadeploy.ops.base import Command, HostContext, Operation, Record, private_dir
from hadeploy.quoting import q
from hadeploy.redact import mask_config_text


def atomic_write(path: str, owner: str, group: str, mode: str, backup: str,
                 validate: str | None, *, content: bytes) -> str:
    """Shell script: write stdin (`content`) to `path` atomically, validated, keeping a backup
    once. What arrived is checked against `content`'s size and sha256 first: a workstation
    that dies mid-upload closes stdin early, and a cut-off file must never replace the old."""
    p, b = q(path), q(backup)
    check = ""
    if validate:
        check = validate.replace("{tmp}", '"$tmp"') + "\n"
    size, digest = len(content), hashlib.sha256(content).hexdigest()
    cut_off = q(f"the upload of {path} arrived incomplete; the file was not replaced")
    return (
        "set -eu\n"
        f"target={p}\n"
        'dir=$(dirname "$target")\n'
        '[ -d "$dir" ] || mkdir -p "$dir"\n'
        # One temp name per target: a write retried after a dead run replaces what that run
        # left. Created anew, owner-only, before any content arrives; removed however the
        # script ends, a hang-up or a closed pipe included (the workstation died).
        'tmp="$dir/.hadeploy.$(basename "$target")"\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        "trap 'rm -f \"$tmp\"; exit 1' HUP INT PIPE TERM\n"
        'rm -f "$tmp"\n'
        '(set -C; umask 077; : > "$tmp")\n'
        'cat > "$tmp"\n'
        + framing.check_arrived('"$tmp"', str(size), digest, cut_off)
        + f'chown {q(owner)}:{q(group)} "$tmp"\n'
        f'chmod {q(mode)} "$tmp"\n'
        f"{check}"
        f'if [ -e "$target" ] && [ ! -e {b} ]; then\n'
        + private_dir(f'"$(dirname {b})"') +
        f'  cp -a "$target" {b}\n'
        "fi\n"
        'mv -f "$tmp" "$target"\n'
        "trap - EXIT\n"
    )


def undo_file(ctx: HostContext, record: Record) -> list[Command]:
    """Put back what the journal says the file was before the run.

    The backup is taken just before the rename, so a missing backup means the file was
    never replaced (validation failed, or the write was cut off): nothing to restore.
    When the file did not exist before, it is removed only if this run wrote it.
    """
    path = record["path"]
    p = q(path)
    if not record.get("existed"):
        return [Command(f"rm -f {p}", summary=f"remove {path} (it did not exist before)")]
    b = q(record["backup"])
    script = (
        f"if [ -e {b} ]; then "
        f"tmp=$(mktemp \"$(dirname {p})/.hadeploy.XXXXXX\") && cp -a {b} \"$tmp\" && "
        f"mv -f \"$tmp\" {p} && rm -f {b}; fi"
    )
    return [Command(script, summary=f"restore {path} from {record['backup']}")]


def unified_diff(path: str, old: bytes | None, new: bytes) -> str:
    """A unified diff of a file change, with secret-looking values masked."""
    old_text = mask_config_text(old.decode("utf-8", "replace")) if old is not None else ""
    new_text = mask_config_text(new.decode("utf-8", "replace"))
    diff = difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"{path} (now)" if old is not None else "/dev/null",
        tofile=f"{path} (after)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


class _FileOp(Operation[FileState]):
    """Shared shape of whole-file and edited-file operations."""

    path: str

    def fact(self, ctx: HostContext) -> Fact[FileState]:
        return file_state(self.path, self.needs_content(ctx))

    def needs_content(self, ctx: HostContext) -> bool:
        return ctx.detail

    def desired(self, ctx: HostContext, state: FileState) -> tuple[bytes, str, str, str] | None:
        """New content, owner, group, mode; None when the file must stay as it is."""
        raise NotImplementedError

    def validate(self, ctx: HostContext) -> str | None:
        return None

    def done(self, ctx: HostContext, state: FileState) -> bool:
        want = self.desired(ctx, state)
        if want is None:
            return True
        content, owner, group, mode = want
        return (state.exists and state.sha256 == hashlib.sha256(content).hexdigest()
                and (state.owner, state.group, state.mode) == (owner, group, mode))

    def intent(self, ctx: HostContext, state: FileState) -> Record:
        return {"kind": "file", "path": self.path, "existed": state.exists,
                "backup": ctx.backup_path(self.path) if state.exists else None}

    def apply(self, ctx: HostContext, state: FileState) -> list[Command]:
        want = self.desired(ctx, state)
        if want is None:
            raise ValueError(f"{self.path} is absent here, so there is nothing to edit")
        content, owner, group, mode = want
        script = atomic_write(self.path, owner, group, mode, ctx.backup_path(self.path),
                              self.validate(ctx), content=content)
        summary = f"write {self.path} ({owner}:{group} {mode}, {len(content)} bytes, atomic"
        summary += ", validated)" if self.validate(ctx) else ")"
        return [Command(script, stdin=content, summary=summary)]

    def preview(self, ctx: HostContext, state: FileState) -> str:
        want = self.desired(ctx, state)
        if want is None:
            return ""
        content, owner, group, mode = want
        diff = unified_diff(self.path, state.content if state.exists else None, content)
        meta = ""
        if state.exists and (state.owner, state.group, state.mode) != (owner, group, mode):
            meta = (f"  {self.path}: {state.owner}:{state.group} {state.mode} -> "
                    f"{owner}:{group} {mode}\n")
        return meta + diff

    def title(self) -> str:
        return f"file {self.path}"


@dataclass(frozen=True)
class FileContent(_FileOp):
    """`path` holds exactly `content` with owner, group and mode (`content_for` None: the host
    has no use for the file, which is left as it is)."""

    op_id: str
    path: str
    content_for: Callable[[HostContext], bytes | None]
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    validation: str | None = None

    def desired(self, ctx: HostContext, state: FileState) -> tuple[bytes, str, str, str] | None:
        content = self.content_for(ctx)
        if content is None:
            return None
        return content, self.owner, self.group, self.mode

    def validate(self, ctx: HostContext) -> str | None:
        return self.validation


@dataclass(frozen=True)
class FileEdit(_FileOp):
    """`path` (which must exist) transformed by a pure edit; owner and mode are kept.
    `missing_ok` leaves an absent file absent; `create` edits it from empty text instead
    (root-owned, 0644; rollback removes it)."""

    op_id: str
    path: str
    edit: Callable[[HostContext, str], str]
    describe: str = ""
    missing_ok: bool = False
    create: bool = False

    def needs_content(self, ctx: HostContext) -> bool:
        return True

    def desired(self, ctx: HostContext, state: FileState) -> tuple[bytes, str, str, str] | None:
        if not state.exists or state.content is None:
            if self.create:
                return self.edit(ctx, "").encode("utf-8"), "root", "root", "0644"
            if self.missing_ok:
                return None
            raise FileNotFoundError(f"{self.path} does not exist on {ctx.node.name}")
        old = state.content.decode("utf-8")
        new = self.edit(ctx, old).encode("utf-8")
        return new, state.owner, state.group, state.mode

    def title(self) -> str:
        return self.describe or f"edit {self.path}"
