"""aptrepo leaves out of its downloads the packages only the workstation has (their candidate
is the installed copy, from no repository): `apt-get download` cannot fetch them, and a lab
host sees them installed through its lower layer. novnc's nodejs on a machine with
NodeSource's nodejs installed is the case that made the full plane's download fail."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from lab import aptrepo

POLICY = """\
nodejs:
  Installed: 20.20.2-1nodesource1+repack1
  Candidate: 20.20.2-1nodesource1+repack1
  Version table:
 *** 20.20.2-1nodesource1+repack1 100
        100 /var/lib/dpkg/status
     18.20.4+dfsg-1~deb12u3 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
python3:
  Installed: 3.11.2-1+b1
  Candidate: 3.11.2-1+b1
  Version table:
 *** 3.11.2-1+b1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
novnc:
  Installed: (none)
  Candidate: 1:1.3.0-2
  Version table:
     1:1.3.0-2 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def test_only_packages_apt_can_download_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert list(argv[:2]) == ["apt-cache", "policy"]
        return subprocess.CompletedProcess(list(argv), 0, POLICY, "")

    monkeypatch.setattr(aptrepo, "run", fake_run)
    assert aptrepo._downloadable(["novnc", "nodejs", "python3"]) == ["novnc", "python3"]
