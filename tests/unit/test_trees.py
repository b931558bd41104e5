"""Tree copies: manifests, their comparison, the copy/swap and undo scripts run with the real
/bin/sh, tar and coreutils in temp directories, the operation's decisions, and the engine's
source probes (the other host's manifest that `done` compares with) through FakeTransport.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy import framing
from hadeploy.engine import Engine
from hadeploy.errors import StepFailed
from hadeploy.events import Event
from hadeploy.facts.trees import Manifest, manifest_script, parse_manifest
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, now
from hadeploy.ops import (
    UNDO,
    Command,
    Fact,
    HostContext,
    Operation,
    Probe,
    SourceRead,
    TreeCopied,
)
from hadeploy.ops.base import Record
from hadeploy.ops.trees import (
    TreePaths,
    differences,
    source_tar_script,
    tree_swap_script,
    tree_undo_script,
    undo_tree,
)
from hadeploy.platforms import Profile, profile_for
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeHost, FakeTransport, batch_probes

ROOT = os.geteuid() == 0
RUN = "20260101-000000-000-t-deploy"
OLD = 1_500_000_000  # an mtime in the past, to see it kept


def sh(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", script], input=stdin, capture_output=True,
                          timeout=60, check=False)


def manifest_of(path: Path, exclude: tuple[str, ...] = ()) -> Manifest:
    out = sh(manifest_script(str(path), exclude))
    assert out.returncode == 0, out.stderr
    return parse_manifest(out.stdout.decode())


def ctx(profile: Profile | None = None, run_id: str = RUN) -> HostContext:
    return HostContext(Node("ctl2", IPv4Address("198.18.0.15")), profile or profile_for("debian"),
                       run_id, "ctl.x.copy")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    directory = tmp_path / "etc dir" / "it's"  # quoting matters: a space and a quote
    directory.mkdir(parents=True)
    return directory


def make_tree(root: Path) -> None:
    """A small /etc/keystone: a private key dir, a group-readable conf, relative symlinks."""
    (root / "credential-keys").mkdir(parents=True)
    (root / "credential-keys" / "0").write_text("PRIVATE\n")
    (root / "credential-keys" / "0").chmod(0o600)
    (root / "credential-keys").chmod(0o700)
    (root / "keystone.conf").write_text("[DEFAULT]\nadmin_token = x\n")
    (root / "keystone.conf").chmod(0o640)
    (root / "a file 'quoted'.ini").write_text("q\n")
    (root / "back\\slash").write_text("b\n")
    (root / "current").symlink_to("credential-keys/0")
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("../keystone.conf")
    for path in root.rglob("*"):  # every file: trees made a second apart must compare equal
        if path.is_file() and not path.is_symlink():
            os.utime(path, (OLD, OLD))
    if ROOT:
        os.chown(root / "credential-keys", 1, 1)  # daemon:daemon, by name on the other side
        os.chown(root / "credential-keys" / "0", 1, 1)
        os.chown(root / "keystone.conf", 0, 1)
    root.chmod(0o750)


def copy(source: Path, paths: TreePaths, exclude: tuple[str, ...] = (),
         owners: tuple[str, ...] = (), groups: tuple[str, ...] = ()
         ) -> subprocess.CompletedProcess[bytes]:
    stream = sh(source_tar_script(str(source), exclude))
    assert stream.returncode == 0, stream.stderr
    # framed as the engine carries it from the source host
    return sh(tree_swap_script(paths, exclude, owners, groups), framing.carried(stream.stdout))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".hadeploy"))


def tree_paths(base: Path, name: str = "dest") -> TreePaths:
    return TreePaths.of(str(base / name), RUN, str(base / "backup" / RUN / "step" / name))


# -- manifests -------------------------------------------------------------------------------


def test_manifest_lists_types_owners_modes_links_checksums_and_mtimes(base: Path) -> None:
    make_tree(base / "src")
    manifest = manifest_of(base / "src")
    assert manifest.state == "dir"
    assert set(manifest.entries) == {".", "credential-keys", "credential-keys/0",
                                     "keystone.conf", "a file 'quoted'.ini", "back\\slash",
                                     "current", "sub", "sub/up"}
    key = manifest.entries["credential-keys/0"]
    assert (key.kind, key.mode, key.mtime) == ("f", "0600", OLD)
    assert key.sha256 == hashlib.sha256(b"PRIVATE\n").hexdigest()
    assert manifest.entries["back\\slash"].sha256 == hashlib.sha256(b"b\n").hexdigest()
    assert manifest.entries["."].mode == "0750" and manifest.entries["."].kind == "d"
    link = manifest.entries["current"]
    assert (link.kind, link.target, link.sha256) == ("l", "credential-keys/0", "")
    assert manifest.entries["sub/up"].target == "../keystone.conf"
    if ROOT:
        assert (key.owner, key.group) == ("daemon", "daemon")
        conf = manifest.entries["keystone.conf"]
        assert (conf.owner, conf.group) == ("root", "daemon")
    lines = sh(manifest_script(str(base / "src"))).stdout.decode().splitlines()
    meta = [line for line in lines if line.startswith("M\t")]
    assert meta == sorted(meta)


def test_manifest_of_absent_and_non_directories(base: Path) -> None:
    assert manifest_of(base / "missing").state == "absent"
    (base / "file").write_text("x")
    assert manifest_of(base / "file").state == "notdir"
    (base / "dir").mkdir()
    (base / "link").symlink_to("dir")
    assert manifest_of(base / "link").state == "notdir"  # never follow a link to elsewhere


def test_manifest_honours_excludes(base: Path) -> None:
    make_tree(base / "src")
    manifest = manifest_of(base / "src", ("credential-keys", "sub/up"))
    assert "credential-keys" not in manifest.entries
    assert "credential-keys/0" not in manifest.entries
    assert "sub/up" not in manifest.entries and "sub" in manifest.entries


def test_names_with_newlines_or_tabs_are_refused(base: Path) -> None:
    (base / "src").mkdir()
    (base / "src" / "two\nlines").write_text("x")
    with pytest.raises(ValueError, match="tabs or newlines"):
        manifest_of(base / "src")
    with pytest.raises(ValueError, match="no tree manifest"):
        parse_manifest("something else\n")


def test_differences_name_each_entry(base: Path) -> None:
    make_tree(base / "src")
    make_tree(base / "same")
    source = manifest_of(base / "src")
    assert differences(source, manifest_of(base / "same")) == []
    other = base / "other"
    make_tree(other)
    (other / "keystone.conf").chmod(0o644)
    (other / "extra").write_text("e")
    (other / "current").unlink()
    (other / "current").symlink_to("/etc/absolute")
    (other / "credential-keys" / "0").write_text("CHANGED\n")
    os.utime(other / "credential-keys" / "0", (OLD, OLD))
    found = differences(source, manifest_of(other))
    assert [line.split(":")[0] for line in found] == [
        "~ credential-keys/0", "~ current", "- extra", "~ keystone.conf"]
    assert "0644" in found[3] and "0640" in found[3]
    absent = differences(source, manifest_of(base / "missing"))
    assert absent[0] == "destination is absent" and len(absent) == 1 + len(source.entries)
    assert "+ credential-keys/0: f" in "\n".join(absent)
    # mtimes count for files: tar keeps them, so a copy that lost them is not equal
    touched = base / "touched"
    make_tree(touched)
    os.utime(touched / "keystone.conf", (OLD + 60, OLD + 60))
    assert [d.split(":")[0] for d in differences(source, manifest_of(touched))] == [
        "~ keystone.conf"]
    # files edited per host after the copy: content and mtime not compared, the rest is
    (touched / "keystone.conf").write_text("[DEFAULT]\nbind_host = 198.18.0.15\n")
    assert differences(source, manifest_of(touched), rewritten=("keystone.conf",)) == []
    (touched / "keystone.conf").chmod(0o600)
    assert differences(source, manifest_of(touched), rewritten=("keystone.conf",)) != []


# -- the copy and its undo, with /bin/sh, tar and coreutils ------------------------------------


def test_copy_to_a_new_path_reproduces_the_tree(base: Path) -> None:
    make_tree(base / "src")
    paths = tree_paths(base)
    result = copy(base / "src", paths, owners=("root",), groups=("root",))
    assert result.returncode == 0, result.stderr
    assert differences(manifest_of(base / "src"), manifest_of(base / "dest")) == []
    assert os.readlink(base / "dest" / "current") == "credential-keys/0"  # still relative
    assert (base / "dest" / "keystone.conf").stat().st_mtime == OLD
    assert leftovers(base) == []
    assert not (base / "backup").exists()  # nothing existed, nothing to keep
    undo = sh(tree_undo_script(paths, existed=False))
    assert undo.returncode == 0, undo.stderr
    assert not (base / "dest").exists()


def test_copy_over_an_existing_tree_keeps_a_backup_and_undo_restores_it(base: Path) -> None:
    make_tree(base / "src")
    dest = base / "dest"
    dest.mkdir(mode=0o755)
    (dest / "stale.conf").write_text("old\n")
    before = manifest_of(dest)
    paths = tree_paths(base)
    result = copy(base / "src", paths)
    assert result.returncode == 0, result.stderr
    assert differences(manifest_of(base / "src"), manifest_of(dest)) == []
    assert differences(before, manifest_of(Path(paths.backup))) == []
    assert leftovers(base) == []
    again = copy(base / "src", paths)  # a re-run in the same run keeps the first backup
    assert again.returncode == 0, again.stderr
    assert differences(before, manifest_of(Path(paths.backup))) == []
    for _ in range(2):  # undo twice: the second finds nothing left to do
        undo = sh(tree_undo_script(paths, existed=True))
        assert undo.returncode == 0, undo.stderr
        assert differences(before, manifest_of(dest)) == []
        assert not Path(paths.backup).exists() and leftovers(base) == []


def test_backup_directories_the_copy_creates_are_owner_only_at_every_level(
        base: Path) -> None:
    make_tree(base / "src")
    (base / "dest").mkdir()
    paths = tree_paths(base)  # backup at base/backup/RUN/step/dest: three new levels
    old = os.umask(0o022)  # an operator's usual umask must not widen them
    try:
        result = copy(base / "src", paths)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    levels = [base / "backup", base / "backup" / RUN, base / "backup" / RUN / "step"]
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in levels} == {
        str(p): oct(0o700) for p in levels}


def test_interrupted_swap_is_finished_by_a_rerun_or_undone(base: Path) -> None:
    make_tree(base / "src")
    dest = base / "dest"
    dest.mkdir()
    (dest / "original").write_text("o\n")
    before = manifest_of(dest)
    paths = tree_paths(base)
    # Cut off between the two renames: the original is aside, the target is missing.
    dest.rename(paths.aside)
    undo = sh(tree_undo_script(paths, existed=True))
    assert undo.returncode == 0, undo.stderr
    assert differences(before, manifest_of(dest)) == [] and leftovers(base) == []
    # Same cut, then the resumed run applies again: the aside becomes the backup.
    dest.rename(paths.aside)
    result = copy(base / "src", paths)
    assert result.returncode == 0, result.stderr
    assert differences(before, manifest_of(Path(paths.backup))) == []
    assert differences(manifest_of(base / "src"), manifest_of(dest)) == []
    assert leftovers(base) == []


def test_excluded_entries_are_not_copied_and_the_destinations_are_kept(base: Path) -> None:
    make_tree(base / "src")
    dest = base / "dest"
    (dest / "credential-keys").mkdir(parents=True)
    (dest / "credential-keys" / "local").write_text("mine\n")
    paths = tree_paths(base)
    result = copy(base / "src", paths, exclude=("credential-keys",))
    assert result.returncode == 0, result.stderr
    assert (dest / "credential-keys" / "local").read_text() == "mine\n"
    assert not (dest / "credential-keys" / "0").exists()
    assert differences(manifest_of(base / "src", ("credential-keys",)),
                       manifest_of(dest, ("credential-keys",))) == []


def test_missing_owner_names_refuse_the_copy_before_any_change(base: Path) -> None:
    make_tree(base / "src")
    dest = base / "dest"
    dest.mkdir()
    (dest / "mine").write_text("m\n")
    before = manifest_of(dest)
    result = copy(base / "src", tree_paths(base), owners=("root", "no-such-user-hadeploy"),
                  groups=("no-such-group-hadeploy",))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "user no-such-user-hadeploy, group no-such-group-hadeploy." in err
    assert "nothing was changed" in err
    assert differences(before, manifest_of(dest)) == [] and leftovers(base) == []


def test_a_failed_extraction_leaves_the_target_and_no_staging(base: Path) -> None:
    dest = base / "dest"
    dest.mkdir()
    (dest / "mine").write_text("m\n")
    before = manifest_of(dest)
    result = sh(tree_swap_script(tree_paths(base)),
                framing.carried(b"this is not a tar archive" * 100))
    assert result.returncode != 0
    assert differences(before, manifest_of(dest)) == [] and leftovers(base) == []


@pytest.mark.parametrize("cut", ["at a member boundary", "mid-member", "header only"])
def test_a_stream_cut_off_never_reaches_the_tree(base: Path, cut: str) -> None:
    """A tar archive cut at a member boundary extracts without an error, files missing: the
    engine sends the size and sha256 first, and nothing short of all of it is extracted."""
    make_tree(base / "src")
    stream = sh(source_tar_script(str(base / "src")))
    framed = framing.carried(stream.stdout)
    header = framed.index(b"\n") + 1
    arrived = {"at a member boundary": framed[:header + 1536],
               "mid-member": framed[:header + 700], "header only": framed[:header]}[cut]
    dest = base / "dest"
    dest.mkdir()
    (dest / "mine").write_text("m\n")
    before = manifest_of(dest)
    result = sh(tree_swap_script(tree_paths(base)), arrived)
    assert result.returncode == 1
    assert result.stderr.decode().endswith(
        f"the copy of {dest} arrived incomplete; nothing was replaced\n")
    assert differences(before, manifest_of(dest)) == [] and leftovers(base) == []


@pytest.mark.skipif(not ROOT, reason="owners by name need root")
def test_owners_are_restored_by_name(base: Path) -> None:
    make_tree(base / "src")
    result = copy(base / "src", tree_paths(base))
    assert result.returncode == 0, result.stderr
    key = manifest_of(base / "dest").entries["credential-keys/0"]
    assert (key.owner, key.group, key.mode) == ("daemon", "daemon", "0600")


# -- the operation -----------------------------------------------------------------------------


def probe_of(dest: Path, source: Path) -> Probe:
    return Probe(sh(manifest_script(str(dest))).stdout.decode(),
                 sources=(sh(manifest_script(str(source))).stdout.decode(),))


def test_operation_decides_from_both_manifests(base: Path) -> None:
    make_tree(base / "src")
    op = TreeCopied("tree", "ctl1", str(base / "dest"))
    assert op.probe(ctx()) == manifest_script(str(base / "dest"))
    (read,) = op.source_probes(ctx())
    assert read == SourceRead("ctl1", manifest_script(str(base / "dest")))
    seen = probe_of(base / "dest", base / "src")
    assert not op.done(ctx(), op.read(ctx(), seen))
    assert op.intent(ctx(), op.read(ctx(), seen))["existed"] is False
    assert "+ credential-keys/0: f" in op.preview(ctx(), op.read(ctx(), seen))
    copy(base / "src", tree_paths(base))
    assert op.done(ctx(), op.read(ctx(), probe_of(base / "dest", base / "src")))
    assert op.preview(ctx(), op.read(ctx(), probe_of(base / "dest", base / "src"))) == ""
    with pytest.raises(ValueError, match="no manifest of ctl1"):
        op.done(ctx(), op.read(ctx(), Probe(seen.stdout)))
    with pytest.raises(ValueError, match=r"ctl1:.* is absent, not a directory"):
        op.done(ctx(), op.read(ctx(), probe_of(base / "dest", base / "nothing")))


def test_apply_reads_a_tar_on_the_source_and_checks_owner_names(base: Path) -> None:
    make_tree(base / "src")
    op = TreeCopied("tree", "ctl1", "/etc/key stone", exclude=("fernet-keys",))
    seen = probe_of(base / "dest", base / "src")
    (command,) = op.apply(ctx(), op.read(ctx(), seen))
    assert command.stdin is None and command.stdin_from is not None
    assert command.stdin_from == SourceRead(
        "ctl1", "LC_ALL=C tar -C '/etc/key stone' --anchored --no-wildcards "
        "--exclude=./fernet-keys -cpf - .")
    assert "target='/etc/key stone'\n" in command.script
    assert "backup='/var/lib/hadeploy/backup/" + RUN + "/ctl.x.copy/etc/key stone'\n" \
        in command.script
    owners = sorted({e.owner for e in parse_manifest(seen.sources[0]).entries.values()})
    assert f"for u in {' '.join(owners)}; do" in command.script
    assert "restorecon" not in command.script
    el = op.apply(ctx(profile_for("el7")), op.read(ctx(profile_for("el7")), seen))[0].script
    assert 'restorecon -R "$target"' in el
    # Offline plans have no source manifest: the command is still shown.
    assert op.apply(ctx(), op.read(ctx(), Probe("")))[0].stdin_from is not None
    record = op.intent(ctx(), op.read(ctx(), Probe("@@tree dir\n")))
    assert record == {
        "kind": "tree", "path": "/etc/key stone", "source": "ctl1", "existed": True,
        "backup": f"/var/lib/hadeploy/backup/{RUN}/ctl.x.copy/etc/key stone",
        "stage": f"/etc/.hadeploy.key stone.new.{RUN}",
        "aside": f"/etc/.hadeploy.key stone.old.{RUN}",
        "trash": f"/etc/.hadeploy.key stone.trash.{RUN}",
        "restore": f"/etc/.hadeploy.key stone.restore.{RUN}"}


def test_undo_is_registered_and_works_from_the_record_alone(base: Path) -> None:
    assert UNDO["tree"] is undo_tree
    op = TreeCopied("tree", "ctl1", "/etc/keystone")
    record = op.intent(ctx(), op.read(ctx(), Probe("@@tree dir\n")))
    (command,) = UNDO["tree"](ctx(), record)
    assert command.summary == (f"restore /etc/keystone from /var/lib/hadeploy/backup/{RUN}"
                               "/ctl.x.copy/etc/keystone")
    assert command.script == tree_undo_script(TreePaths.of(
        "/etc/keystone", RUN, f"/var/lib/hadeploy/backup/{RUN}/ctl.x.copy/etc/keystone"), True)
    absent = op.intent(ctx(), op.read(ctx(), Probe("@@tree absent\n")))
    (remove,) = UNDO["tree"](ctx(profile_for("el8")), absent)
    assert remove.summary == "remove /etc/keystone (it did not exist before)"
    assert "rm -rf \"$target\"" in remove.script and "restorecon" not in remove.script
    assert "restorecon" in UNDO["tree"](ctx(profile_for("el8")), record)[0].script


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"path": "etc/keystone"}, "absolute"),
    ({"path": "/"}, "absolute"),
    ({"path": "/etc/../keystone"}, "normalised"),
    ({"exclude": ("../x",)}, "plain relative"),
    ({"exclude": ("*.log",)}, "no wildcards"),
    ({"exclude": ("/abs",)}, "plain relative"),
    ({"rewritten": ("a/./b",)}, "plain relative"),
])
def test_bad_paths_are_refused_when_the_runbook_is_built(kwargs: dict[str, object],
                                                         problem: str) -> None:
    args: dict[str, object] = {"op_id": "t", "source_host": "ctl1", "path": "/etc/keystone",
                               **kwargs}
    with pytest.raises(ValueError, match=problem):
        TreeCopied(**args)  # type: ignore[arg-type]


# -- the engine's source probes, with FakeTransport --------------------------------------------


@dataclass(frozen=True)
class SameAs(Operation[Probe]):
    """`path` holds what `path` holds on `source` (a tree copy in the five-word vocabulary)."""

    op_id: str
    source: str
    path: str

    def fact(self, ctx: HostContext) -> Fact[Probe]:
        return Fact.raw(f"cat {self.path}")

    def source_probes(self, ctx: HostContext) -> tuple[SourceRead, ...]:
        return (SourceRead(self.source, f"cat {self.path}"),)

    def done(self, ctx: HostContext, seen: Probe) -> bool:
        return seen.sources == (seen.stdout,)

    def intent(self, ctx: HostContext, seen: Probe) -> Record:
        return {"kind": "test-same-as", "path": self.path}

    def apply(self, ctx: HostContext, seen: Probe) -> list[Command]:
        return [Command(f"echo {seen.sources[0].strip()} > {self.path}")]


def _undo_same_as(ctx: HostContext, record: Record) -> list[Command]:
    return [Command(f"rm -f {record['path']}")]


@pytest.fixture(autouse=True)
def same_as_undo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollback can undo SameAs records for the length of each test (the real kinds are
    in `hadeploy.ops.UNDO` from the start)."""
    monkeypatch.setitem(UNDO, "test-same-as", _undo_same_as)


def engine_for(transport: FakeTransport, events: list[Event]) -> Engine:
    nodes = {h: Node(h, IPv4Address(f"198.18.0.{11 + i}")) for i, h in enumerate("ab")}
    engine = Engine(transport, nodes, "debian", events.append)
    engine.apply_facts({h: {"platform": "debian", "init": "sysv"} for h in nodes})
    return engine


def fake_world() -> tuple[FakeTransport, FakeHost, FakeHost]:
    transport = FakeTransport()
    source, dest = FakeHost("a", {"/x": "42\n"}), FakeHost("b")
    transport.on(source)
    transport.on(dest)
    return transport, source, dest


def test_engine_runs_source_probes_for_done_plan_and_verify(tmp_path: Path) -> None:
    transport, _, dest = fake_world()
    runbook = Runbook("t", (Step("t.copy", "copy", {"b": (SameAs("same", "a", "/x"),)}),))
    events: list[Event] = []
    engine = engine_for(transport, events)
    (item,) = engine.plan(runbook)
    assert [commands[0].script for _, commands, _ in item.pending] == ["echo 42 > /x"]
    journal = Journal(tmp_path / "run.json", "r1", "t", "deploy", "h.toml", "fp", now())
    engine.run(runbook, journal)
    assert dest.files == {"/x": "42\n"}
    assert journal.step("t.copy").hosts["b"].state == "changed"
    # read on the source: for the plan, the run's probe and the verification; never written
    on_a = transport.commands_on("a")
    assert on_a == ["cat /x"] * 3
    assert all(batch_probes(s) is not None for s in transport.commands_on("b")
               if not s.startswith("echo"))
    again = Journal(tmp_path / "run2.json", "r2", "t", "deploy", "h.toml", "fp", now())
    engine.run(runbook, again)
    assert again.step("t.copy").hosts["b"].state == "ok"


def test_a_failing_source_probe_fails_the_destination_naming_the_source(tmp_path: Path) -> None:
    transport, source, _ = fake_world()
    source.files.clear()  # `cat /x` exits 1 on the source
    runbook = Runbook("t", (Step("t.copy", "copy", {"b": (SameAs("same", "a", "/x"),)}),))
    engine = engine_for(transport, [])
    journal = Journal(tmp_path / "run.json", "r1", "t", "deploy", "h.toml", "fp", now())
    with pytest.raises(StepFailed) as failed:
        engine.run(runbook, journal)
    message = str(failed.value)
    assert "failed on b" in message
    assert "a: command exited 1: probe of the source of same (for b)" in message
    assert journal.step("t.copy").hosts["b"].state == "failed"
    assert journal.step("t.copy").hosts["b"].changes == []  # nothing was journaled or run

    transport.down.add("a")
    with pytest.raises(StepFailed, match="a: connection lost"):
        engine.run(runbook, Journal(tmp_path / "run2.json", "r2", "t", "deploy", "h.toml",
                                    "fp", now()))

    stray = Runbook("t", (Step("t.copy", "copy", {"b": (SameAs("same", "zz", "/x"),)}),))
    with pytest.raises(StepFailed, match="source host 'zz' is not in the inventory"):
        engine.run(stray, Journal(tmp_path / "run3.json", "r3", "t", "deploy", "h.toml",
                                  "fp", now()))
