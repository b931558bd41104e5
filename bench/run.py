#!/usr/bin/env python3
"""Benchmark `deploy-lb` in the lab: hadeploy cold and no-op, the SSH floor, ansible-core.

    sudo .venv/bin/python bench/run.py --hosts 3,12 --runs 5      # writes bench/RESULTS.md

For each host count N it brings up a lab of N load balancers (lb1..lbN) and 3 backend hosts
(ctl1..ctl3), then runs rounds of, on the same hosts in the same session:

  hadeploy cold    all LB hosts reset to bare Debian, `python -m hadeploy deploy-lb --yes`
  hadeploy no-op   the same command again (nothing to change)
  ansible cold     hosts reset again, `ansible-playbook bench/ansible/site.yml`, same files
  ansible no-op    the playbook again
  floor            `ssh -F lab/ssh_config HOST true` to every LB host in parallel, fresh
                   connections (what no SSH tool can beat)

and reports medians. Wall times include each tool's start-up, as an operator sees them.
hadeploy's round trips per host come from its JSON `run-finished` event. ansible-core is
installed only into `bench/.venv` (created here), never into hadeploy's environment.

One lab per machine: the lab is built under the same blocking lock as the test suite's
(/var/tmp/hadeploy-lab.lock), so this waits for a running test session and vice versa.
Needs root. Touches only lab hosts (198.18.0.0/24).

    .venv/bin/python bench/run.py --offline-plan 200 --runs 5      # no lab, no root

measures only the offline plan of a generated inventory of 200 load balancers (and 3
controllers; addresses from 198.18.0.0/15, never connected to): the whole
`python -m hadeploy deploy-lb --hosts INV --dry-run --offline` process (wall time and peak
RSS), and inside a fresh process the time to load the inventory, build the runbook and plan,
and print the plan. Its section of bench/RESULTS.md is replaced (or added); nothing else in
the file changes. A full lab run measures it too, after the labs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import platform
import pstats
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hadeploy import __version__ as HADEPLOY_VERSION  # noqa: E402
from hadeploy.app import read_secrets  # noqa: E402
from hadeploy.inventory import load_inventory  # noqa: E402
from hadeploy.render import (  # noqa: E402
    render_haproxy_cfg,
    render_haproxy_check_script,
    render_keepalived_conf,
    render_sysctl_conf,
)
from lab import LAB_LOCK, Lab, lab_lock  # noqa: E402
from lab.inventory import lab_inventory_text  # noqa: E402

BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
PLAYBOOK = BENCH / "ansible" / "site.yml"
BACKENDS = ("ctl1", "ctl2", "ctl3")
STATS_PASSWORD = "bench-only-password"


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- running things ---------------------------------------------------------------------------


@dataclass
class Timed:
    """One timed child process."""

    seconds: float
    exit: int
    stdout: str
    stderr: str
    max_rss_kb: int


def timed(argv: Sequence[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Timed:
    """Run argv, returning its wall time, exit code, output and peak memory (ru_maxrss)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(seconds, proc.returncode, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"), usage.ru_maxrss)


def must(result: Timed, what: str) -> Timed:
    """`result`, or stop the benchmark showing the failing command's output."""
    if result.exit != 0:
        raise SystemExit(f"{what} failed (exit {result.exit}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    return result


def ensure_ansible() -> Path:
    """ansible-playbook from the benchmark's own virtualenv (created on first use)."""
    playbook = VENV / "bin" / "ansible-playbook"
    if playbook.exists():
        return playbook
    log(f"creating {VENV} with ansible-core (pip)")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "ansible-core"], check=True, stdin=subprocess.DEVNULL)
    return playbook


# -- the job ----------------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything one host count needs: lab, inventory, ansible files."""

    lab: Lab
    lbs: tuple[str, ...]
    work: Path
    inventory: Path
    ansible_cfg: Path
    env: dict[str, str]
    cp_root: Path
    src: Path = ROOT


def write_job(lab: Lab, lbs: tuple[str, ...], work: Path, src: Path = ROOT) -> Setup:
    """The hadeploy inventory, and the same files rendered by hadeploy for ansible."""
    work.mkdir(parents=True, exist_ok=True)
    text = lab_inventory_text(lab, lbs=lbs, controllers=BACKENDS, name="bench")
    # Priorities are 103, 102, ...: the health-script weight must exceed their spread.
    text = text.replace("script_weight = 10", f"script_weight = {max(10, len(lbs))}")
    inventory = work / "hosts.toml"
    inventory.write_text(text)
    inventory.chmod(0o600)
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD, "NO_COLOR": "1",
           "ANSIBLE_NOCOLOR": "1"}
    os.environ["HADEPLOY_STATS_PASSWORD"] = STATS_PASSWORD
    inv = load_inventory(str(inventory))
    secrets = read_secrets(inv, required=True)
    files = work / "files"
    files.mkdir(exist_ok=True)
    (files / "haproxy.cfg").write_text(render_haproxy_cfg(inv, secrets))
    (files / "check_haproxy.sh").write_text(render_haproxy_check_script())
    (files / "60-hadeploy-haproxy.conf").write_text(render_sysctl_conf())
    for node in inv.balancers:
        (files / f"keepalived-{node.name}.conf").write_text(
            render_keepalived_conf(inv, node, secrets))
    (work / "inventory.ini").write_text(
        "[lb]\n" + "".join(f"{name}\n" for name in lbs) + "\n[lb:vars]\n"
        f"files_dir={files}\nansible_python_interpreter=/usr/bin/python3\n")
    cp_root = Path(tempfile.mkdtemp(prefix="hdb-", dir="/tmp"))  # short: socket path limit
    cfg = work / "ansible.cfg"
    cfg.write_text(
        "[defaults]\n"
        f"inventory = {work / 'inventory.ini'}\n"
        "forks = 50\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\n"
        f"local_tmp = {work / 'ansible-tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -F {lab.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
        "control_path = %(directory)s/%%C\n")
    env["ANSIBLE_CONFIG"] = str(cfg)
    return Setup(lab, lbs, work, inventory, cfg, env, cp_root, src)


def reset(setup: Setup) -> None:
    """Every LB host back to bare Debian; hadeploy's journal of earlier runs removed."""
    for name in setup.lbs:
        setup.lab.hosts[name].reset()
    shutil.rmtree(setup.work / ".hadeploy", ignore_errors=True)


def run_hadeploy(setup: Setup, what: str) -> dict[str, Any]:
    """One `deploy-lb --yes --json`: wall time, memory, round trips and connections per host."""
    env = setup.env if setup.src == ROOT else {**setup.env, "PYTHONPATH": str(setup.src)}
    result = must(timed([sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts",
                         str(setup.inventory), "--yes", "--json"], env, setup.src),
                  f"hadeploy {what}")
    finished = [json.loads(line) for line in result.stdout.splitlines()
                if line.startswith("{") and '"run-finished"' in line]
    trips = finished[-1].get("round_trips", {}) if finished else {}
    connections = finished[-1].get("connections", {}) if finished else {}
    changed = result.stdout.count('"event": "host-changed"')
    return {"seconds": result.seconds, "rss_mb": result.max_rss_kb / 1024,
            "round_trips": statistics.mean(trips.values()) if trips else None,
            "round_trips_max": max(trips.values()) if trips else None,
            "connections_max": max(connections.values()) if connections else None,
            "changed": changed}


def run_ansible(setup: Setup, playbook: Path, what: str) -> dict[str, Any]:
    """One ansible-playbook run with fresh SSH control masters, closed afterwards."""
    cp_dir = Path(tempfile.mkdtemp(dir=setup.cp_root))
    env = {**setup.env, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir)}
    try:
        result = must(timed([str(playbook), str(PLAYBOOK)], env, setup.work),
                      f"ansible {what}")
    finally:
        for name in setup.lbs:  # masters persist 60 s: close them so the next run is fresh
            subprocess.run(["ssh", "-F", str(setup.lab.ssh_config), "-o",
                            f"ControlPath={cp_dir}/%C", "-O", "exit", name],
                           capture_output=True, check=False, timeout=10)
        shutil.rmtree(cp_dir, ignore_errors=True)
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", result.stdout))
    return {"seconds": result.seconds, "changed": changed}


def run_apt_alone(setup: Setup) -> float:
    """The part of a cold run no tool can skip: `apt-get install haproxy keepalived` on every
    LB host at once, entered directly (nsenter, no SSH, no deploy tool): the wall time."""
    reset(setup)
    install = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               "-o Dpkg::Options::=--force-confold haproxy keepalived >/dev/null 2>&1")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(setup.lbs)) as pool:
        for result in pool.map(lambda name: setup.lab.hosts[name].exec(install, check=False),
                               setup.lbs):
            if result.returncode != 0:
                raise SystemExit(f"apt-get install failed in the lab: {result.stderr}")
    return time.monotonic() - started


def run_floor(setup: Setup) -> float:
    """`ssh HOST true` to every LB host at once, fresh connections: the wall time."""
    started = time.monotonic()
    procs = [subprocess.Popen(["ssh", "-F", str(setup.lab.ssh_config), "-o", "ControlMaster=no",
                               "-o", "ControlPath=none", name, "true"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for name in setup.lbs]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"ssh true failed: {err.decode(errors='replace')}")
    return time.monotonic() - started


# -- one host count ---------------------------------------------------------------------------


@dataclass
class Samples:
    """Every measurement of one host count."""

    hosts: int
    runs: int
    data: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        """Record one sample."""
        self.data.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        """Median of the samples of `key` (NaN when there are none)."""
        values = [v for v in self.data.get(key, []) if v is not None]
        return statistics.median(values) if values else float("nan")

    def most(self, key: str) -> float:
        """Largest sample of `key` (NaN when there are none)."""
        values = [v for v in self.data.get(key, []) if v is not None]
        return max(values) if values else float("nan")


def measure(count: int, runs: int, playbook: Path | None, state_dir: Path,
            src: Path = ROOT, progress: Callable[[Samples], None] | None = None) -> Samples:
    """Bring up a lab for `count` LB hosts, measure `runs` rounds, take the lab down.

    The machine's one lab: this waits for the lab lock while a test session holds it."""
    with lab_lock(LAB_LOCK, waiting=lambda: log(f"{count} LB hosts: waiting for the lab lock "
                                                f"{LAB_LOCK}")):
        return _measure_in_lab(count, runs, playbook, state_dir, src, progress)


def _measure_in_lab(count: int, runs: int, playbook: Path | None, state_dir: Path,
                    src: Path, progress: Callable[[Samples], None] | None) -> Samples:
    lbs = tuple(f"lb{i}" for i in range(1, count + 1))
    samples = Samples(count, runs)
    lab: Lab | None = None
    setup: Setup | None = None
    try:
        log(f"{count} LB hosts: lab up ({count} + {len(BACKENDS)} hosts)")
        lab = Lab.up(lbs + BACKENDS, state_dir / "lab")
        job = setup = write_job(lab, lbs, state_dir / f"work-{count}", src)
        for round_no in range(1, runs + 1):
            tools: list[Callable[[], None]] = [
                lambda: _round_hadeploy(job, samples),
                lambda: _round_ansible(job, samples, playbook),
            ]
            if round_no % 2 == 0:  # alternate which tool goes first
                tools.reverse()
            for tool in tools:
                tool()
            samples.add("floor", run_floor(job))
            samples.add("apt", run_apt_alone(job))
            samples.add("load", os.getloadavg()[0])
            if progress is not None:
                progress(samples)
            log(f"{count} LB hosts: round {round_no}/{runs}: " + ", ".join(
                f"{k} {v[-1]:.2f}" for k, v in samples.data.items()
                if k in ("hadeploy_cold", "hadeploy_noop", "ansible_cold", "ansible_noop",
                         "floor", "apt")))
    finally:
        if lab is not None:
            log(f"{count} LB hosts: lab down")
            lab.down()
        if setup is not None:
            shutil.rmtree(setup.cp_root, ignore_errors=True)
            shutil.rmtree(setup.work, ignore_errors=True)
    return samples


def _round_hadeploy(setup: Setup, samples: Samples) -> None:
    reset(setup)
    cold = run_hadeploy(setup, "cold")
    noop = run_hadeploy(setup, "no-op")
    if noop["changed"]:
        raise SystemExit(f"hadeploy's re-run changed {noop['changed']} host steps: not a no-op")
    for kind, result in (("cold", cold), ("noop", noop)):
        samples.add(f"hadeploy_{kind}", result["seconds"])
        samples.add(f"hadeploy_{kind}_rss", result["rss_mb"])
        samples.add(f"hadeploy_{kind}_rt", result["round_trips"])
        samples.add(f"hadeploy_{kind}_rt_max", result["round_trips_max"])
        samples.add(f"hadeploy_{kind}_conn", result["connections_max"])


def _round_ansible(setup: Setup, samples: Samples, playbook: Path | None) -> None:
    if playbook is None:
        return
    reset(setup)
    cold = run_ansible(setup, playbook, "cold")
    noop = run_ansible(setup, playbook, "no-op")
    samples.add("ansible_cold", cold["seconds"])
    samples.add("ansible_noop", noop["seconds"])
    samples.add("ansible_noop_changed", noop["changed"])


# -- offline plan (no lab) -------------------------------------------------------------------

OFFLINE_SECTION = "## Offline plan of a generated inventory (no lab)"
OFFLINE_SERVICES = ("keystone", "glance", "nova", "neutron", "cinder")
OFFLINE_TARGET = 1.0  # issue 8: the offline plan of a 200-host inventory builds in under 1 s

# Run in a fresh interpreter (so the figures are a cold process's, as an operator's): the
# steps of `deploy-lb --offline` timed one by one, as JSON on stdout.
PHASES_CHILD = """
import json, os, sys, time
started = time.perf_counter()
from hadeploy.app import Deployment
from hadeploy.console import make_console, print_plan
imported = time.perf_counter()
deployment = Deployment(sys.argv[1])
loaded = time.perf_counter()
runbook, items = deployment.plan("lb", offline=True)
planned = time.perf_counter()
with open(os.devnull, "w") as sink:
    print_plan(make_console(sink), items, offline=True)
printed = time.perf_counter()
print(json.dumps({"import": imported - started, "load": loaded - imported,
                  "plan": planned - loaded, "print": printed - planned,
                  "hosts": len(runbook.hosts), "steps": len(runbook.steps)}))
"""


def offline_inventory_text(lbs: int) -> str:
    """A valid inventory of `lbs` load balancers and 3 controllers that nothing connects to.

    Addresses come from 198.18.0.0/15 (the benchmark range): the balancers and the VIP share
    198.18.0.0/16, the controllers are 198.18.254.1-3. Priorities are unique (254 down), and
    the health-script weight exceeds their spread, as the inventory rules demand.
    """
    if not 2 <= lbs <= 253:
        raise ValueError(f"{lbs} load balancers: an inventory holds 2..253 (unique "
                         "priorities in 1..254 and a script weight ≤ 253 above their spread)")
    services = ", ".join(f'"{s}"' for s in OFFLINE_SERVICES)
    lines = [
        "# Generated by bench/run.py --offline-plan: planned offline, never connected to.",
        "[deployment]", 'name = "offline-bench"', 'release = "modern"', 'platform = "debian"',
        'topology = "dedicated"', "",
        "[ssh]", 'user = "hadeploy"', "sudo = true", "",
        "[vip]", 'address = "198.18.255.100"', "prefix = 16", 'interface = "eth0"',
        "virtual_router_id = 51", "",
        "[keepalived]", f"script_weight = {lbs}", "",
        "[services]", f"balance = [{services}]", "",
    ]
    for index in range(lbs):
        lines += ["[[lb]]", f'name = "lb{index + 1}"',
                  f'address = "198.18.{index // 250}.{index % 250 + 1}"',
                  f"priority = {254 - index}", ""]
    for index in range(3):
        lines += ["[[controller]]", f'name = "ctl{index + 1}"',
                  f'address = "198.18.254.{index + 1}"']
        lines += ["original = true", ""] if index == 0 else [""]
    return "\n".join(lines)


def measure_offline_plan(lbs: int, runs: int, src: Path = ROOT,
                         profile: bool = False) -> dict[str, Any]:
    """Median figures of `runs` offline plans of a generated `lbs`-balancer inventory."""
    work = Path(tempfile.mkdtemp(prefix="hadeploy-offline-plan-"))
    try:
        inventory = work / "hosts.toml"
        inventory.write_text(offline_inventory_text(lbs))
        env = {**os.environ, "NO_COLOR": "1"}
        if src != ROOT:
            env["PYTHONPATH"] = str(src)
        argv = [sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts", str(inventory),
                "--dry-run", "--offline"]
        samples: dict[str, list[float]] = {}
        lines = 0
        for round_no in range(1, runs + 1):
            whole = must(timed(argv, env, work), "offline plan")
            if "Plan (offline, nothing probed)" not in whole.stdout:
                raise SystemExit(f"offline plan printed no summary:\n{whole.stdout[-2000:]}")
            lines = whole.stdout.count("\n")
            phases = must(timed([sys.executable, "-c", PHASES_CHILD, str(inventory)], env,
                                work), "offline plan phases")
            split = json.loads(phases.stdout.strip().splitlines()[-1])
            if split["hosts"] != lbs:
                raise SystemExit(f"the plan covers {split['hosts']} hosts, not {lbs}")
            for key, value in (("whole", whole.seconds), ("rss_mb", whole.max_rss_kb / 1024),
                               ("import", split["import"]), ("load", split["load"]),
                               ("plan", split["plan"]), ("print", split["print"])):
                samples.setdefault(key, []).append(value)
            log(f"offline plan, {lbs} LB hosts: round {round_no}/{runs}: whole "
                f"{whole.seconds:.3f} s, load {split['load']:.3f} s, plan {split['plan']:.3f} s,"
                f" print {split['print']:.3f} s, {whole.max_rss_kb / 1024:.1f} MB")
        if profile:
            _profile_offline_plan(inventory)
        return {"lbs": lbs, "runs": runs, "lines": lines, "load_avg": os.getloadavg()[0],
                **{k: statistics.median(v) for k, v in samples.items()},
                **{f"{k}_min": min(v) for k, v in samples.items()},
                **{f"{k}_max": max(v) for k, v in samples.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _profile_offline_plan(inventory: Path) -> None:
    """cProfile of one in-process offline plan (load, plan, print), top functions on stderr."""
    from hadeploy.app import Deployment
    from hadeploy.console import make_console, print_plan

    profiler = cProfile.Profile()
    with open(os.devnull, "w") as sink:
        profiler.enable()
        _, items = Deployment(str(inventory)).plan("lb", offline=True)
        print_plan(make_console(sink), items, offline=True)
        profiler.disable()
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)


def offline_section(rows: list[tuple[str, dict[str, Any]]], command: str, when: float) -> str:
    """The RESULTS.md section of an offline plan measurement: one row per source tree
    measured (label, figures), the tree being measured first."""
    info = machine()
    found = rows[0][1]
    met = found["whole"] < OFFLINE_TARGET
    table = [
        "| hadeploy | planned LB hosts | runs | whole process, median (min–max) | "
        "load inventory | build runbook + plan | print plan | load + plan | peak RSS | "
        "lines printed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, f in rows:
        table.append(
            f"| {label} | {f['lbs']} | {f['runs']} | {f['whole']:.3f} s "
            f"({f['whole_min']:.3f}–{f['whole_max']:.3f}) | {f['load']:.3f} s | "
            f"{f['plan']:.3f} s | {f['print']:.3f} s | {f['load'] + f['plan']:.3f} s | "
            f"{f['rss_mb']:.1f} MB | {f['lines']} |")
    return "\n".join([
        OFFLINE_SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))} with `{command}` "
        f"on {info['cpus']} CPUs ({info['cpu']}), {info['os']}, Python "
        f"{platform.python_version()}, hadeploy {HADEPLOY_VERSION}; load average (1 min) "
        f"{found['load_avg']:.1f} at the end (the machine is shared). No lab: the inventory "
        f"({found['lbs']} load balancers and 3 controllers, addresses in 198.18.0.0/15) is "
        "generated and never connected to.",
        "",
        *table,
        "",
        f"Target (issue 8): the offline plan of a 200-host inventory in under "
        f"{OFFLINE_TARGET:g} s: {found['whole']:.3f} s, "
        f"{'met' if met else 'NOT met'}{'' if found['lbs'] == 200 else ' (not 200 hosts)'}.",
        "",
        "- whole process: `python -m hadeploy deploy-lb --hosts INV --dry-run --offline` with "
        "NO_COLOR=1 and stdout to a file, wall time from start to exit (interpreter start-up "
        "and imports included); peak RSS is the child's ru_maxrss.",
        "- the phases: a fresh `python -c` that imports hadeploy (median "
        f"{found['import']:.3f} s), then times `Deployment(INV)` (load and validate the "
        "inventory), `Deployment.plan('lb', offline=True)` (build the runbook, plan every "
        "host) and `print_plan` to /dev/null with `time.perf_counter`; medians of the runs.",
        *(["- a baseline row is the same measurement of another source tree "
           "(`--baseline-src`), in the same session."] if len(rows) > 1 else []),
        "",
    ])


def write_offline_section(path: Path, section: str) -> None:
    """Put `section` into `path` in place of its earlier version (or at the end)."""
    text = path.read_text() if path.exists() else ""
    start = text.find(OFFLINE_SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    else:
        end = text.find("\n## ", start + len(OFFLINE_SECTION))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text)


# -- report -----------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              timeout=60)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    debian = Path("/etc/debian_version")
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
    }


def versions(playbook: Path | None) -> dict[str, str]:
    """Versions of everything measured."""
    import fabric
    import paramiko

    found = {
        "hadeploy": HADEPLOY_VERSION,
        "Python (workstation)": platform.python_version(),
        "paramiko": paramiko.__version__,
        "fabric": fabric.__version__,
        "OpenSSH client": _first_line(["ssh", "-V"]),
        "haproxy / keepalived (hosts)": " / ".join(
            _first_line(["dpkg-query", "-W", "-f", "${Version}", p])
            for p in ("haproxy", "keepalived")),
    }
    if playbook is not None:
        found["ansible-core"] = _first_line([str(playbook), "--version"])
    return found


def _fmt(value: float, unit: str = " s") -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}{unit}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or not b:
        return "n/a"
    return f"{a / b:.2f}"


def report(results: list[Samples], command: str, playbook: Path | None,
           started: float) -> str:
    """RESULTS.md text."""
    info = machine()
    lines = [
        "# Benchmark: `deploy-lb` in the lab",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} in one run "
        f"of `{command}` ({(time.time() - started) / 60:.1f} min). Every figure is a "
        "median over the rounds; hadeploy, ansible and the floor ran on the same lab hosts, "
        "interleaved round by round.",
        "",
        f"**Machine:** {info['cpus']} CPUs ({info['cpu']}), {info['memory']} memory, "
        f"kernel {info['kernel']}, {info['os']}. The lab hosts are network namespaces on "
        "this same machine, so their sshd, apt/dpkg and daemons share the 2 cores with the "
        "tool being measured.",
        "",
        "**Versions:** " + "; ".join(f"{k} {v}" for k, v in versions(playbook).items()) + ".",
        "",
        "## Wall time (medians)",
        "",
        "| LB hosts | rounds | floor: `ssh true` to all, fresh | apt alone, all hosts | "
        "hadeploy cold | hadeploy no-op | ansible cold | ansible no-op |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        lines.append(
            f"| {s.hosts} | {s.runs} | {_fmt(s.median('floor'))} | {_fmt(s.median('apt'))} | "
            f"{_fmt(s.median('hadeploy_cold'))} | {_fmt(s.median('hadeploy_noop'))} | "
            f"{_fmt(s.median('ansible_cold'))} | {_fmt(s.median('ansible_noop'))} |")
    lines += [
        "",
        "## Ratios (same run)",
        "",
        "| LB hosts | hadeploy no-op / floor | hadeploy cold / floor | "
        "hadeploy cold − apt alone | hadeploy / ansible, cold | hadeploy / ansible, no-op | "
        "ansible no-op is N× slower |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        hc, hn = s.median("hadeploy_cold"), s.median("hadeploy_noop")
        ac, an, fl = s.median("ansible_cold"), s.median("ansible_noop"), s.median("floor")
        lines.append(f"| {s.hosts} | {_ratio(hn, fl)} | {_ratio(hc, fl)} | "
                     f"{_fmt(hc - s.median('apt'))} | {_ratio(hc, ac)} | {_ratio(hn, an)} | "
                     f"{_ratio(an, hn)} |")
    lines += [
        "",
        "## hadeploy: SSH round trips and memory (medians)",
        "",
        "| LB hosts | round trips per host, cold | no-op | max on one host, cold / no-op | "
        "SSH connections per host | peak RSS cold / no-op |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        lines.append(
            f"| {s.hosts} | {_fmt(s.median('hadeploy_cold_rt'), '')} | "
            f"{_fmt(s.median('hadeploy_noop_rt'), '')} | "
            f"{_fmt(s.median('hadeploy_cold_rt_max'), '')} / "
            f"{_fmt(s.median('hadeploy_noop_rt_max'), '')} | "
            f"{_fmt(s.most('hadeploy_cold_conn'), '')} | "
            f"{_fmt(s.median('hadeploy_cold_rss'), ' MB')} / "
            f"{_fmt(s.median('hadeploy_noop_rss'), ' MB')} |")
    noop_changed = [c for s in results for c in s.data.get("ansible_noop_changed", [])]
    lines += [
        "",
        "Load average (1 min) after each round, a sign of other work on the machine: "
        + "; ".join(f"{s.hosts} hosts: " + ", ".join(f"{v:.1f}" for v in s.data.get("load", []))
                    for s in results) + ".",
        "",
        "A round trip is one remote command on a reused connection: facts, one batched probe "
        "per step (which also probes the host's later steps: while nothing changes they need "
        "no round trip of their own), each apply command, one verify probe per changed step. "
        "The no-op rounds changed nothing on either side"
        + ("" if not any(noop_changed) else
           f" for hadeploy; ansible's re-runs reported changed={noop_changed}") + ".",
        "",
        "## Targets (issue 8)",
        "",
    ]
    lines += _targets(results)
    lines += ["", "Of each cold run, installing the two packages alone takes "
              + "; ".join(f"{_fmt(s.median('apt'))} of {_fmt(s.median('hadeploy_cold'))} on "
                          f"{s.hosts} hosts" for s in results)
              + " (medians): the rest is what hadeploy adds, SSH set-up included."]
    lines += [
        "",
        "## How it was measured",
        "",
        "- The lab: N load balancers `lb1..lbN` and 3 backend hosts `ctl1..ctl3` (their "
        "APIs are not started: haproxy's health checks just see closed ports, so no backend "
        "traffic competes for the CPU). Each host is reset to bare Debian before every cold "
        "run (a fresh overlay disk; the time of the reset is not counted).",
        "- hadeploy: `python -m hadeploy deploy-lb --hosts INV --yes --json` as user "
        "`hadeploy` with sudo, wall time of the whole process (start-up included); the "
        "no-op is the same command right after the cold run.",
        "- ansible: `bench/ansible/site.yml` with ansible-core from `bench/.venv`, "
        "pipelining on, forks 50, no fact gathering, ControlPersist within a run but fresh "
        "control masters for every run, the same user and sudo, and the very files hadeploy "
        "renders (haproxy.cfg, keepalived.conf per node, check script, sysctl drop-in).",
        "- floor: `ssh -F LAB/ssh_config HOST true` to every LB host at once, new "
        "connections (`ControlMaster=no`).",
        "- apt alone: `apt-get install haproxy keepalived` run directly in every reset LB host "
        "at once (no SSH, no tool): the part of a cold run that no deploy tool can skip. Both "
        "tools install the same two packages from the lab's offline repository, and 12 hosts "
        "installing at once share the 2 cores. The hosts are bare Debian: the lab's base layer "
        "leaves out the workstation's own software, including the ~16,600 Cloud SDK man pages "
        "that made dpkg's man-db trigger take ~2.6 s per install instead of ~0.4 s.",
    ]
    return "\n".join(lines) + "\n"


def _targets(results: list[Samples]) -> list[str]:
    bars = {3: (1.0, 8.0), 12: (1.8, 25.0)}
    lines = ["| LB hosts | target | measured | met |", "|---:|---|---:|:-:|"]
    for s in results:
        noop_bar, cold_bar = bars.get(s.hosts, (float("nan"), float("nan")))
        hn, hc, an = s.median("hadeploy_noop"), s.median("hadeploy_cold"), s.median("ansible_noop")
        checks = [
            (f"no-op ≤ {noop_bar:g} s", _fmt(hn), hn <= noop_bar),
            (f"cold ≤ {cold_bar:g} s", _fmt(hc), hc <= cold_bar),
            ("no-op ≥ 3.5× faster than ansible", f"{_ratio(an, hn)}×",
             not math.isnan(an) and an / hn >= 3.5),
            ("≤ 3 round trips per host per unchanged step (no-op, 7 steps)",
             f"{_fmt(s.median('hadeploy_noop_rt_max'), '')} per host",
             s.median("hadeploy_noop_rt_max") <= 21),
            ("one SSH connection per host per run", _fmt(s.most("hadeploy_cold_conn"), ""),
             s.most("hadeploy_cold_conn") == 1),
        ]
        if s.hosts == 3:
            checks.insert(0, ("first bar: no-op < 1.5 s", _fmt(hn), hn < 1.5))
        if s.hosts == 12:
            checks.append(("memory of a 12-host run < 150 MB RSS",
                           _fmt(s.median("hadeploy_cold_rss"), " MB"),
                           s.median("hadeploy_cold_rss") < 150))
        lines += [f"| {s.hosts} | {what} | {value} | {'yes' if ok else 'NO'} |"
                  for what, value, ok in checks]
    return lines


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure every host count, write RESULTS.md and raw samples."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="3,12", help="LB host counts (default 3,12)")
    parser.add_argument("--runs", default="5", help="rounds per host count; one number, or "
                        "one per host count (e.g. 5,3)")
    parser.add_argument("--no-ansible", action="store_true", help="skip ansible")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/tmp/hadeploy-bench"),
                        help="where the lab and the work files live while measuring")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--hadeploy-src", type=Path, default=ROOT,
                        help="measure the hadeploy in this source tree instead (e.g. an older "
                        "`git archive`, for before/after figures)")
    parser.add_argument("--offline-plan", type=int, metavar="N",
                        help="only measure the offline plan of a generated inventory of N load "
                        "balancers (no lab, no root); updates its section of --out")
    parser.add_argument("--profile", action="store_true",
                        help="with --offline-plan: cProfile one in-process plan (stderr)")
    parser.add_argument("--baseline-src", type=Path,
                        help="with --offline-plan: also measure the hadeploy in this source tree "
                        "(e.g. a `git archive` of an older commit), as a second row")
    parser.add_argument("--baseline-label", default="baseline",
                        help="what --baseline-src is, for the table (e.g. a commit)")
    args = parser.parse_args(argv)
    command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.offline_plan is not None:
        started = time.time()
        runs = int(args.runs.split(",")[0])
        rows = [("this tree", measure_offline_plan(args.offline_plan, runs,
                                                   args.hadeploy_src.resolve(), args.profile))]
        if args.baseline_src is not None:
            rows.append((f"baseline: {args.baseline_label}", measure_offline_plan(
                args.offline_plan, runs, args.baseline_src.resolve())))
        section = offline_section(rows, command.strip(), started)
        write_offline_section(args.out, section)
        log(f"updated the offline plan section of {args.out}")
        print(section)
        return 0
    if os.geteuid() != 0:
        print("bench/run.py needs root (it builds the lab)", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.hosts.split(",")]
    runs = [int(n) for n in args.runs.split(",")]
    if len(runs) == 1:
        runs *= len(counts)
    if len(runs) != len(counts):
        parser.error("--runs needs one number or one per host count")
    # A CI timeout's SIGTERM must still take the lab down (the finally blocks).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.time()
    playbook = None if args.no_ansible else ensure_ansible()
    raw = args.out.with_name(args.out.stem + ".json")
    results: list[Samples] = []

    def save(current: Samples) -> None:  # after every round: an interrupted run keeps data
        done = [*results, current] if current not in results else results
        raw.write_text(json.dumps([{"hosts": s.hosts, "runs": s.runs, "samples": s.data}
                                   for s in done], indent=1) + "\n")

    for count, n in zip(counts, runs, strict=True):
        results.append(measure(count, n, playbook, args.state_dir,
                               args.hadeploy_src.resolve(), save))
        save(results[-1])
    args.out.write_text(report(results, command.strip(), playbook, started))
    offline = measure_offline_plan(200, 5, args.hadeploy_src.resolve())
    write_offline_section(args.out, offline_section(
        [("this tree", offline)],
        "python bench/run.py --offline-plan 200 --runs 5 (part of the run above)", time.time()))
    log(f"wrote {args.out} and {raw}")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
