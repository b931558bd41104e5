"""The offline plan of a large inventory is complete, and the fast way plans are printed
writes exactly what rich would.

The inventory is the one `bench/run.py --offline-plan` measures: 200 load balancers (and 3
controllers) with addresses from 198.18.0.0/15, never connected to. Timing is the benchmark's
business; these tests check what is printed.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

import hadeploy.console as console_module
from bench.offline_plan import offline_inventory_text
from hadeploy.console import PlanLine, make_console, print_lines
from hadeploy.inventory import load_inventory
from hadeploy.render import render_haproxy_cfg, render_keepalived_conf
from hadeploy.runbook import build_lb_runbook
from tests.unit.examples import ROOT

LBS = 200
STEP = re.compile(r"^(lb\.[a-z-]+)  ")
HOST = re.compile(r"^  (\S+):$")
OP = re.compile(r"^    [?~] (.*?)(?: \(checked at run time\))?$")


def _parse(out: str) -> dict[str, dict[str, list[str]]]:
    """step id -> host -> the lines printed under that host, in the order printed."""
    plan: dict[str, dict[str, list[str]]] = {}
    step = host = None
    for line in out.splitlines():
        if found := STEP.match(line):
            step, host = found[1], None
            assert step not in plan, f"step {step} printed twice"
            plan[step] = {}
        elif (found := HOST.match(line)) and step is not None:
            host = found[1]
            assert host not in plan[step], f"{host} printed twice under {step}"
            plan[step][host] = []
        elif line.startswith("    ") and step is not None and host is not None:
            plan[step][host].append(line)
    return plan


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("offline-plan") / "hosts.toml"
    path.write_text(offline_inventory_text(LBS))
    return path


def test_the_200_host_offline_plan_shows_every_host_under_every_step(big: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADEPLOY_")}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1")
    result = subprocess.run([sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts", str(big),
                             "--dry-run", "--offline"], cwd=big.parent, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    inv = load_inventory(big)
    runbook = build_lb_runbook(inv)
    names = [node.name for node in inv.balancers]
    assert len(names) == LBS
    plan = _parse(result.stdout)
    assert list(plan) == [step.id for step in runbook.steps]
    for step in runbook.steps:
        assert list(plan[step.id]) == names, step.id
        for host in names:
            shown = [m[1] for line in plan[step.id][host] if (m := OP.match(line))]
            assert shown == [op.title() for op in step.ops[host]], (step.id, host)
    # The files each host would get are printed whole, each host its own keepalived.conf.
    haproxy = [f"      +{line}" for line in render_haproxy_cfg(inv, {}).splitlines()]
    for node in inv.balancers:
        assert _contains(plan["lb.haproxy-cfg"][node.name], haproxy), node.name
        keepalived = [f"      +{line}"
                      for line in render_keepalived_conf(inv, node, {}).splitlines()]
        assert _contains(plan["lb.keepalived"][node.name], keepalived), node.name
    operations = sum(len(step.ops[h]) for step in runbook.steps for h in step.hosts)
    assert result.stdout.endswith(
        f"\nPlan (offline, nothing probed): {operations} operations to check\n")
    assert "Traceback" not in result.stderr


def _contains(lines: list[str], block: list[str]) -> bool:
    """Whether `block` appears in `lines` as consecutive lines."""
    return any(lines[i:i + len(block)] == block for i in range(len(lines) - len(block) + 1))


# Text a plan can carry (file contents, commands, errors) that rich's markup would have
# altered, or that rich itself treats specially: markup-like brackets, backslashes, emoji
# codes, tabs (expanded by cell width), control codes (stripped), wide characters, and a
# multi-line error.
TRICKY: list[PlanLine] = [
    (("", ""),),
    (("lb.step", "bold"), ("  [bold]not markup[/bold]", "")),
    (("  host: ", ""), ("cannot probe: line one\nline two [red]", "red")),
    (("      ", ""), ("+bind 198.18.0.100:5000 user:x:0 :smile: \\", "green")),
    (("      ", ""), ("-trailing backslash \\[", "red")),
    (("      $ printf 'a\\tb' \\", ""),),
    (("      ", ""), ("+\tkey\t= value\x07\x08", "green")),
    (("      ", ""), ("+bell\x07 back\x08space\r", "green")),
    (("    ", ""), ("~ 日本語\tタブ", "yellow")),
    (("  ctl1:", ""),),
]


def _plain_console(out: io.StringIO, record: bool = False) -> Console:
    """make_console's plain console; `record` makes print_lines go through rich instead."""
    if not record:
        return make_console(out)
    return Console(file=out, no_color=True, highlight=False, soft_wrap=True,
                   force_terminal=False, width=120, record=True)


def test_plain_plans_are_written_as_rich_would_write_them() -> None:
    fast, slow = io.StringIO(), io.StringIO()
    print_lines(_plain_console(fast), TRICKY * 3)
    print_lines(_plain_console(slow, record=True), TRICKY * 3)
    assert fast.getvalue() == slow.getvalue()


def test_styled_plans_print_in_chunks_as_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def terminal(out: io.StringIO) -> Console:
        return Console(file=out, force_terminal=True, color_system="truecolor",
                       highlight=False, soft_wrap=True, width=120)

    monkeypatch.setattr(console_module, "PRINT_CHUNK", 4)
    chunked, one_by_one = io.StringIO(), io.StringIO()
    print_lines(terminal(chunked), TRICKY * 3)
    single = terminal(one_by_one)
    for parts in TRICKY * 3:
        single.print(Text.assemble(*parts))
    assert chunked.getvalue() == one_by_one.getvalue()
    assert "\x1b[" in chunked.getvalue()


@pytest.mark.parametrize("record", [False, True])
def test_plan_text_is_shown_as_it_is(record: bool) -> None:
    out = io.StringIO()
    print_lines(_plain_console(out, record), TRICKY[1:5])
    assert out.getvalue() == (
        "lb.step  [bold]not markup[/bold]\n"
        "  host: cannot probe: line one\nline two [red]\n"
        "      +bind 198.18.0.100:5000 user:x:0 :smile: \\\n"
        "      -trailing backslash \\[\n")
