"""The journal: atomic private files, clear errors for damaged ones, the run store and lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hadeploy.errors import JournalError
from hadeploy.journal import (
    HostEntry,
    Journal,
    JournalWriter,
    RunStore,
    StepEntry,
    live_changes,
    state_dir_for,
    write_atomic,
)
from hadeploy.redact import Redactor
from hadeploy.render.secrets import MASK

ROOT = Path(__file__).resolve().parents[2]


def sample(path: Path) -> Journal:
    journal = Journal(path, "20260101-000000-000-lb-deploy", "lb", "deploy", "/inv/hosts.toml",
                      "abc123", 1700000000.5, facts={"lb1": {"platform": "debian"}})
    journal.steps.append(StepEntry("lb.packages", "Install", {
        "lb1": HostEntry("changed", 1.0, 2.0, [
            {"op": "packages", "title": "packages haproxy",
             "record": {"kind": "packages", "requested": ["haproxy"]}}]),
        "lb2": HostEntry("failed", 1.0, 2.5, [], "lb2: command exited 100"),
    }))
    return journal


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / ".hadeploy" / "runs" / "r.json"
    journal = sample(path)
    journal.save()
    again = Journal.load(path)
    assert again == journal
    assert again.step("lb.packages").hosts["lb2"].error == "lb2: command exited 100"


def test_journal_is_private_and_written_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "state" / "runs" / "r.json"
    journal = sample(path)
    journal.save()
    journal.status = "done"
    journal.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert os.listdir(path.parent) == ["r.json"]
    assert json.loads(path.read_text())["status"] == "done"


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.json"
    write_atomic(path, b"old\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["j.json"]


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def dribble(fd: int, data: bytes | memoryview) -> int:  # at most 3 bytes per call
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(os, "write", dribble)
    write_atomic(tmp_path / "j.json", b"0123456789" * 5)
    assert (tmp_path / "j.json").read_bytes() == b"0123456789" * 5


def damage(tmp_path: Path, mutate: object) -> Path:
    path = tmp_path / "runs" / "r.json"
    sample(path).save()
    if isinstance(mutate, bytes):
        path.write_bytes(mutate)
    else:
        data = json.loads(path.read_text())
        assert callable(mutate)
        mutate(data)
        path.write_text(json.dumps(data))
    return path


def _set(key: str, value: object) -> object:
    return lambda data: data.__setitem__(key, value)


def _host(field: str, value: object) -> object:
    return lambda data: data["steps"][0]["hosts"]["lb1"].__setitem__(field, value)


def test_writer_masks_secrets_also_where_json_escapes_them(tmp_path: Path) -> None:
    secret = 'pa"ss\\wörd'
    journal = sample(tmp_path / "j.json")
    journal.steps[0].hosts["lb2"].error = f"denied for {secret}"
    JournalWriter(Redactor([secret])).save(journal)
    text = (tmp_path / "j.json").read_text()
    assert json.dumps(secret)[1:-1] not in text and secret not in text
    assert Journal.load(tmp_path / "j.json").step("lb.packages").hosts["lb2"].error == \
        f"denied for {MASK}"


def test_writer_group_commits_parallel_saves(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    journal = sample(tmp_path / "j.json")
    writer = JournalWriter(Redactor())
    writes: list[int] = []
    save = Journal.save

    def slow_save(self: Journal, redact: Callable[[str], str] | None = None) -> None:
        writes.append(len(self.steps))
        time.sleep(0.05)
        save(self, redact)

    monkeypatch.setattr(Journal, "save", slow_save)

    missing: list[int] = []

    def change_and_save(i: int) -> None:
        journal.steps.append(StepEntry(f"s{i}", "t", {}))
        writer.save(journal)
        # on return, the file holds this thread's change
        if f"s{i}" not in [s.id for s in Journal.load(journal.path).steps]:
            missing.append(i)

    threads = [threading.Thread(target=change_and_save, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert missing == []
    assert len(Journal.load(journal.path).steps) == 13
    assert len(writes) < 12  # waiting threads were covered by one later write


@pytest.mark.parametrize("mutate", [
    pytest.param(b"", id="empty"),
    pytest.param(b'{"format": 1, "run_id": "x", "st', id="truncated"),
    pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
    pytest.param(b"[1, 2, 3]", id="list-not-object"),
    pytest.param(b'"just a string"', id="string-not-object"),
    pytest.param(_set("format", 99), id="future-format"),
    pytest.param(lambda data: data.pop("run_id"), id="missing-key"),
    pytest.param(_set("steps", {"a": 1}), id="steps-not-a-list"),
    pytest.param(_set("facts", [1, 2]), id="facts-not-a-mapping"),
    pytest.param(_set("started", "yesterday"), id="started-not-a-number"),
    pytest.param(_host("state", "exploded"), id="unknown-state"),
    pytest.param(_host("changes", {"op": "x"}), id="changes-not-a-list"),
    pytest.param(_host("changes", ["packages"]), id="change-not-an-object"),
    pytest.param(_host("changes", [{"record": {}}]), id="change-without-op"),
    pytest.param(_host("changes", [{"op": "p", "record": "kind=file"}]), id="record-not-object"),
])
def test_damaged_journal_gives_a_clear_error(tmp_path: Path, mutate: object) -> None:
    path = damage(tmp_path, mutate)
    with pytest.raises(JournalError) as caught:
        Journal.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"mv {path} {path}.broken" in message
    assert "nothing was run" in message


def test_missing_journal_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot be read"):
        Journal.load(tmp_path / "nope.json")


def test_ensure_step_is_idempotent_and_adds_new_hosts(tmp_path: Path) -> None:
    journal = sample(tmp_path / "j.json")
    entry = journal.ensure_step("lb.packages", "ignored", ["lb1", "lb3"])
    assert entry.title == "Install"
    assert entry.hosts["lb1"].state == "changed"
    assert entry.hosts["lb3"].state == "pending"
    assert [s.id for s in journal.steps] == ["lb.packages"]
    new = journal.ensure_step("lb.sysctl", "Sysctl", ["lb1"])
    assert [s.id for s in journal.steps] == ["lb.packages", "lb.sysctl"]
    assert not new.done
    with pytest.raises(KeyError):
        journal.step("nope")


def test_changed_steps_ignore_changes_that_were_rolled_back(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.json", "r", "lb", "deploy", "i", "f", 0.0)
    record = {"kind": "file", "path": "/etc/x"}
    journal.steps = [
        StepEntry("changed", "", {"h": HostEntry("changed")}),
        StepEntry("undone", "", {"h": HostEntry("failed", changes=[
            {"op": "f", "record": record, "rolled_back": True}])}),
        StepEntry("half", "", {"h": HostEntry("pending", changes=[{"op": "f", "record": record}])}),
        StepEntry("ok", "", {"h": HostEntry("ok"), "other": HostEntry("changed")}),
    ]
    assert journal.changed_steps("h") == {"changed", "half"}
    assert journal.changed_steps("other") == {"ok"}
    assert live_changes(journal.steps[1].hosts["h"]) == []


def test_state_dir_is_beside_the_inventory(tmp_path: Path) -> None:
    assert state_dir_for(str(tmp_path / "site" / "hosts.toml")) == tmp_path / "site" / ".hadeploy"


def test_run_store_lists_and_finds_the_latest(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".hadeploy")
    assert store.all() == []
    assert store.latest("lb") is None
    run_id = store.new_run_id("lb", "deploy")
    assert run_id.endswith("-lb-deploy") and len(run_id.split("-")[0]) == 8
    for rid, phase, kind in [("20260101-000000-000-lb-deploy", "lb", "deploy"),
                             ("20260102-000000-000-lb-rollback", "lb", "rollback"),
                             ("20260103-000000-000-lb-deploy", "lb", "deploy"),
                             ("20260104-000000-000-ctl-deploy", "controllers", "deploy")]:
        Journal(store.journal_path(rid), rid, phase, kind, "i", "f", 0.0).save()
    assert [j.run_id for j in store.all()] == sorted(j.run_id for j in store.all())
    latest = store.latest("lb")
    assert latest is not None and latest.run_id == "20260103-000000-000-lb-deploy"
    rollback = store.latest("lb", "rollback")
    assert rollback is not None and rollback.kind == "rollback"


def test_the_store_reads_a_journal_once_while_its_file_stays_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path / ".hadeploy")
    first = Journal(store.journal_path("20260101-000000-000-lb-deploy"),
                    "20260101-000000-000-lb-deploy", "lb", "deploy", "i", "f", 0.0)
    first.save()
    Journal(store.journal_path("20260102-000000-000-lb-deploy"),
            "20260102-000000-000-lb-deploy", "lb", "deploy", "i", "f", 0.0).save()
    loaded: list[str] = []
    load = Journal.load.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Journal], path: Path) -> Journal:
        loaded.append(path.name)
        return load(cls, path)  # type: ignore[no-any-return]

    monkeypatch.setattr(Journal, "load", classmethod(counted))
    assert [s.status for s in store.summaries()] == ["running", "running"]
    assert [s.status for s in store.summaries()] == ["running", "running"]
    assert len(loaded) == 2  # once each, not once per question
    first.status = "done"
    first.save()  # changed on disk: read again
    assert [s.status for s in store.summaries()] == ["done", "running"]
    assert loaded[2:] == ["20260101-000000-000-lb-deploy.json"]


def test_lock_refuses_a_second_holder_in_the_same_process(tmp_path: Path) -> None:
    first, second = RunStore(tmp_path / ".hadeploy"), RunStore(tmp_path / ".hadeploy")
    first.lock()
    try:
        with pytest.raises(JournalError) as caught:
            second.lock()
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message
        assert "nothing was touched" in message
        assert str(tmp_path / ".hadeploy" / "lock") in message
    finally:
        first.unlock()
    second.lock()  # free again once released
    second.unlock()


def test_lock_refuses_while_another_process_holds_it(tmp_path: Path) -> None:
    state = tmp_path / ".hadeploy"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from hadeploy.journal import RunStore; "
         "RunStore(Path(sys.argv[1])).lock(); print('locked', flush=True); sys.stdin.read()",
         str(state)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(JournalError, match=f"pid {holder.pid}"):
            RunStore(state).lock()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder exits; the kernel releases its lock
        holder.wait(timeout=10)
    store = RunStore(state)
    store.lock()
    store.unlock()
