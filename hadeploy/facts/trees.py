"""The manifest of a directory tree on a host: one line per entry with path, type, owner
and group names, mode, symlink target, and for files sha256 and mtime. Two manifests are
equal exactly when a copy of the tree is complete (see `hadeploy.ops.trees`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from hadeploy import framing
from hadeploy.quoting import q

TREE = "tree"
_MARK = framing.tag(TREE)
TAB = "\t"


@dataclass(frozen=True)
class Entry:
    """One entry of a tree as the manifest describes it (`path` is relative, `.` the root)."""

    path: str
    kind: str  # find's %y: d f l p s b c
    owner: str
    group: str
    mode: str
    target: str = ""
    mtime: int | None = None
    sha256: str = ""

    def line(self) -> str:
        """The entry as one manifest line (what `differences` shows)."""
        parts = [self.kind, f"{self.owner}:{self.group}", self.mode]
        if self.kind == "l":
            parts.append(f"-> {self.target}")
        if self.kind == "f":
            parts += [f"sha256 {self.sha256[:12]}", f"mtime {self.mtime}"]
        return " ".join(parts)


@dataclass(frozen=True)
class Manifest:
    """A tree on a host: `absent`, `notdir` (something else is at the path) or `dir`."""

    state: str
    entries: Mapping[str, Entry] = field(default_factory=dict)

    def owners(self) -> tuple[str, ...]:
        """Every owner name in the tree, sorted."""
        return tuple(sorted({e.owner for e in self.entries.values()}))

    def groups(self) -> tuple[str, ...]:
        """Every group name in the tree, sorted."""
        return tuple(sorted({e.group for e in self.entries.values()}))


def _prune(exclude: tuple[str, ...]) -> str:
    """`find` arguments that skip excluded subtrees (empty without excludes)."""
    if not exclude:
        return ""
    paths = " -o ".join(f"-path {q('./' + rel)}" for rel in exclude)
    return f"\\( {paths} \\) -prune -o "


def manifest_script(path: str, exclude: tuple[str, ...] = ()) -> str:
    """Read-only script printing the manifest of the tree at `path` (see `parse_manifest`)."""
    prune = _prune(exclude)
    meta = "'M\\t%y\\t%u\\t%g\\t%m\\t%T@\\t%P\\t%l\\n'"
    return (
        "LC_ALL=C; export LC_ALL; "
        f"p={q(path)}; "
        f'if [ -d "$p" ] && [ ! -L "$p" ]; then echo "{_MARK} dir"; '
        f'cd "$p" && {{ find . {prune}-printf {meta} | sort; '
        f"find . {prune}-type f -exec sha256sum {{}} + | sort -k2 | sed 's/^/H /'; }}; "
        f'elif [ -e "$p" ] || [ -L "$p" ]; then echo "{_MARK} notdir"; '
        f'else echo "{_MARK} absent"; fi'
    )


def _unescape_sum(name: str) -> str:
    """Undo sha256sum's escaping of `\\` and newlines in names."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            out.append("\n" if name[i + 1] == "n" else name[i + 1])
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def parse_manifest(stdout: str) -> Manifest:
    """Parse `manifest_script` output; ValueError for anything it cannot represent."""
    lines = stdout.split("\n")
    head = framing.tagged_words(TREE, lines[0].strip())
    if not head or not head[0]:
        raise ValueError("no tree manifest in the probe output")
    state = head[0][0]
    if state != "dir":
        return Manifest(state)
    entries: dict[str, Entry] = {}
    sums: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("H "):
            text = line[2:]
            escaped = text.startswith("\\")
            digest, _, name = text[int(escaped):].partition("  ")
            name = _unescape_sum(name) if escaped else name
            sums[name[2:] if name.startswith("./") else name] = digest
            continue
        fields = line.split(TAB)
        if len(fields) != 8 or fields[0] != "M":
            raise ValueError(f"cannot read manifest line {line[:80]!r}: file names with tabs or "
                             "newlines are not supported in copied trees")
        _, kind, owner, group, mode, mtime, rel, target = fields
        rel = rel or "."
        entries[rel] = Entry(rel, kind, owner, group, mode.zfill(4), target if kind == "l" else "",
                             int(mtime.split(".")[0]) if kind == "f" else None)
    for rel, digest in sums.items():
        if rel not in entries:
            raise ValueError(f"checksum of {rel!r} has no manifest entry")
        entries[rel] = replace(entries[rel], sha256=digest)
    return Manifest(state, entries)

