"""scripts/ensure_debian_packages.sh: nothing to do when installed, one line naming the fix otherwise."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure_debian_packages.sh"
pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian system")


def run(*packages: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), *packages], capture_output=True, text=True, env=env, timeout=60)


def test_installed_packages_need_nothing():
    r = run("dpkg")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_a_missing_package_without_root_stops_in_one_line_naming_the_install(tmp_path):
    fake_id = tmp_path / "id"
    fake_id.write_text("#!/bin/sh\necho 1000\n")  # not root: the script must not try apt-get
    fake_id.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    r = run("dpkg", "fsqtok-no-such-package", env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == ["error: this reproduction needs Debian's fsqtok-no-such-package: run "
                                     "'sudo apt-get install fsqtok-no-such-package', then rerun"]
