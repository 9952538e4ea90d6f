"""Command-line tools the tests need, installed from Debian's packages where missing (CI runs as root).

A tool that cannot be found or installed fails the test with what to do: never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def debian_tool(binary: str, package: str) -> str:
    """The path of `binary`, after `apt-get install -y <package>` if it is not on PATH."""
    found = shutil.which(binary)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(f"{binary} is missing and cannot be installed here (needs apt-get as root): "
                    f"install Debian's `{package}` package (apt-get install -y {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", package]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    found = shutil.which(binary)
    if not found:
        pytest.fail(f"`apt-get install {package}` succeeded but {binary} is still not on PATH")
    return found
