"""Under gunicorn every app log line is written once (`make demo`'s stack log once showed each twice).

The cause: gunicorn merges its own logging defaults (root -> "console") with gunicorn.conf.py's
logconfig_dict, so the root logger already has the JSON console handler when create_app calls
configure_logging; adding a second one doubled every line. This runs gunicorn's own logging set-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import logging, runpy
from gunicorn.config import Config
from gunicorn.glogging import Logger
from core.logging import configure_logging

cfg = Config()
cfg.set("logconfig_dict", runpy.run_path("gunicorn.conf.py")["logconfig_dict"])
Logger(cfg)                  # what the gunicorn master does with gunicorn.conf.py
configure_logging("INFO")    # what create_app does in each worker
logging.getLogger("webhook.access").info("probe-line")
logging.getLogger("gunicorn.error").info("gunicorn-line")
"""


def test_an_app_line_under_gunicorns_logging_is_written_once_as_json():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    probes = [line for line in lines if "probe-line" in line]
    assert len(probes) == 1, result.stdout
    assert json.loads(probes[0])["logger"] == "webhook.access"
    assert len([line for line in lines if "gunicorn-line" in line]) == 1, result.stdout
