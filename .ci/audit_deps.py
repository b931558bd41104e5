"""pip-audit over hadeploy's runtime dependencies as installed (not the test tools).

Fails on any known vulnerability, and when nothing could be audited at all; lists what no
vulnerability data covered. Run by `./dev test` before pytest.
"""

import json
import subprocess
import sys
import tempfile
import urllib.request
from importlib.metadata import distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pins: dict[str, str] = {}  # the closure of hadeploy's requirements, markers evaluated
seen: set[tuple[str, frozenset[str]]] = set()
todo = [("hadeploy", frozenset[str]())]
while todo:
    wanted, extras = todo.pop()
    dist = distribution(wanted)
    name = canonicalize_name(dist.metadata["Name"])
    if (name, extras) in seen:
        continue
    seen.add((name, extras))
    pins[name] = dist.version
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            todo.append((req.name, frozenset(req.extras)))
del pins["hadeploy"]
with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
    reqs.write("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    reqs.flush()
    audit = subprocess.run(
        [f"{sys.prefix}/bin/pip-audit", "--disable-pip", "--no-deps", "--progress-spinner",
         "off", "--timeout", "30", "--format", "json", "-r", reqs.name],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
if audit.returncode not in (0, 1) or not audit.stdout.startswith("{"):
    sys.exit(f"pip-audit failed ({audit.returncode}): {audit.stderr.strip()}")
vulnerable, by_pypi_project, unaudited = [], [], []
for dep in json.loads(audit.stdout)["dependencies"]:
    name = dep["name"]
    vulns = [v["id"] for v in dep.get("vulns", [])]
    if "skip_reason" in dep:
        # Mirrors of PyPI may serve /pypi/NAME/json but not pip-audit's /pypi/NAME/VERSION/json;
        # the project's JSON lists the vulnerabilities of its latest release only.
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as r:
                project = json.load(r)
        except OSError as exc:
            unaudited.append(f"{name}=={pins[name]} ({dep['skip_reason']}; {exc})")
            continue
        if project["info"]["version"] != pins[name]:
            unaudited.append(f"{name}=={pins[name]} ({dep['skip_reason']}; PyPI's project data "
                             f"covers only its latest release, {project['info']['version']})")
            continue
        by_pypi_project.append(name)
        vulns = [v["id"] for v in project.get("vulnerabilities", []) if not v.get("withdrawn")]
    if vulns:
        vulnerable.append(f"{name}=={pins[name]}: {', '.join(vulns)}")
for line in unaudited:
    print(f"pip-audit: NOT AUDITED {line}")
for line in vulnerable:
    print(f"pip-audit: VULNERABLE {line}")
audited = len(pins) - len(unaudited)
print(f"pip-audit: {len(pins)} runtime dependencies, {audited} audited ({len(by_pypi_project)} "
      f"from PyPI's project data), {len(unaudited)} not audited, {len(vulnerable)} vulnerable")
if vulnerable or not audited:
    sys.exit(1)
