"""A real browser for the journey tests: Debian's chromium, driven by Playwright for Python.

Playwright's own browser builds are never downloaded (no `playwright install`): it launches the system
Chromium by path. A missing chromium is installed with apt-get (as root, like CI), and so is a font
with Traditional Chinese glyphs (fonts-noto-cjk) when the machine has none, or the screenshots show
empty boxes; where that is not possible the tests fail with a message saying what to run, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.services import PROJECT_DIR

CANDIDATES = ("chromium", "chromium-browser")
SCREENSHOTS = PROJECT_DIR / "var" / "screenshots"


class BrowserUnavailable(RuntimeError):
    """No Chromium and no way to install it: the message says what to do."""


def _find() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=900,
                          check=False)


def _apt_install(package: str, what: str) -> None:
    hint = f"install it with `apt-get install -y {package}` (Debian) and run the tests again"
    if os.geteuid() != 0:
        raise BrowserUnavailable(f"{what} is not installed and this user is not root: {hint}")
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable(f"{what} is not installed and there is no apt-get here: {hint}")
    result = _apt("install", "-y", "--no-install-recommends", package)
    if result.returncode != 0:  # a fresh machine has no package lists yet
        update = _apt("update")
        result = _apt("install", "-y", "--no-install-recommends", package)
        if result.returncode != 0:
            tail = (update.stderr + result.stdout + result.stderr)[-2000:]
            raise BrowserUnavailable(f"`apt-get install -y {package}` failed:\n{tail}")


def _has_chinese_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(["fc-list", ":lang=zh-tw", "family"], capture_output=True, text=True, check=False)
    return bool(listed.stdout.strip())


def ensure_chromium() -> str:
    """The path of the system Chromium (Debian's `chromium`, installed if missing), with a CJK font."""
    found = _find()
    if not found:
        _apt_install("chromium", "chromium")
        found = _find()
        if not found:
            raise BrowserUnavailable("apt-get installed chromium but no chromium executable is on PATH")
    if not _has_chinese_font():
        _apt_install("fonts-noto-cjk", "a font for Traditional Chinese")
    return found


def screenshot_path(name: str) -> Path:
    """var/screenshots/<name>.png (git-ignored), for a person to look at after the run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
