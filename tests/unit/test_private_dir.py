"""Every level of hadeploy's directory on a host is owner-only, whoever made it first (the
generated lines run under /bin/sh with HADEPLOY_HOME moved into a temporary directory)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hadeploy.ops.base import HADEPLOY_HOME, private_dir
from hadeploy.quoting import q


def test_every_level_up_to_hadeploys_home_is_made_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "var-lib-hadeploy"
    (home / "backup").mkdir(parents=True, mode=0o755)  # left wide by an earlier version
    home.chmod(0o755)
    (home / "backup").chmod(0o755)
    tmp_path.chmod(0o755)
    target = home / "backup" / "run-1" / "ctl.glance.copy" / "etc"
    script = private_dir(q(f"{HADEPLOY_HOME}/backup/run-1/ctl.glance.copy/etc"))
    result = subprocess.run(["/bin/sh", "-c", "set -eu\n" + script.replace(HADEPLOY_HOME,
                                                                           str(home))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    levels = [target, *target.parents][:5]
    assert levels[-1] == home
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in levels} == {
        str(p): "0o700" for p in levels}
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # above hadeploy's home: not its own
