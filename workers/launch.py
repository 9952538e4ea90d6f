"""`python -m workers.launch <celery worker options>`: WORKER_PROCESSES Celery workers from one line.

Why: the threads pool (the Procfile's default) gives a worker cheap slots to wait on the bank, but one
process runs Python on one core at a time (the GIL), so one `worker` line on a 2-core machine was capped
at one core (bench/RESULTS.md). Celery cannot run threads inside prefork children, so this starts
WORKER_PROCESSES (default 2) whole `celery worker` processes, each with its own threads pool, its own
connection pools and its own metrics port, named celery@host, celery2@host, ... A platform still sees
one process: SIGTERM, SIGINT and SIGQUIT are passed to every worker (a warm or cold Celery shutdown),
and when one worker exits the others are stopped and the launcher exits with its code, so the platform
restarts the whole line (never a line running at half strength unnoticed). WORKER_PROCESSES=1 execs
Celery itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from core.env import SettingsError, env_int

DEFAULT_PROCESSES = 2
MAX_PROCESSES = 32
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def hostname(index: int, argv: Sequence[str]) -> str:
    """The node name of worker `index` (0-based): celery@%h, celery2@%h, ... or the given name's."""
    given = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-n", "--hostname")), None)
    given = given or next((a.split("=", 1)[1] for a in argv if a.startswith("--hostname=")), None)
    name, _, host = (given or "celery@%h").partition("@")
    return f"{name}{index + 1 if index else ''}@{host or '%h'}"


def worker_argv(index: int, argv: Sequence[str]) -> list[str]:
    """Celery's argv for worker `index`: the given options with the hostname made unique."""
    rest: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("-n", "--hostname") and i + 1 < len(argv):
            skip = True
            continue
        if arg.startswith("--hostname="):
            continue
        rest.append(arg)
    return [sys.executable, "-m", "celery", "-A", "workers", "worker", *rest,
            "--hostname", hostname(index, argv)]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the launcher dies (Linux), so no worker outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def run(argv: Sequence[str], processes: int) -> int:
    """Start the workers, pass signals on, and return when they are all gone."""
    # Each worker leads its own session, so a signal sent to the launcher's whole group (a terminal's
    # Ctrl-C, a supervisor's killpg) reaches it once, through forward(), not twice (a second SIGINT
    # or SIGQUIT would turn Celery's warm shutdown into a cold one); and each dies with the launcher.
    children = [subprocess.Popen(worker_argv(i, argv), start_new_session=True, preexec_fn=_die_with_parent)
                for i in range(processes)]

    stopping: list[int] = []  # the signals passed on so far

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    code: int | None = None
    while code is None:
        for child in children:
            if child.poll() is not None:
                code = child.returncode
                break
        else:
            time.sleep(0.5)  # polling the children: os.wait would also reap them from under Popen
    if not stopping:  # one worker is gone by itself: stop the others, the platform restarts the line
        forward(signal.SIGTERM, None)  # (never twice: a second signal is a second shutdown line)
    for child in children:
        child.wait()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        processes = env_int(os.environ, "WORKER_PROCESSES", DEFAULT_PROCESSES, 1, maximum=MAX_PROCESSES)
    except SettingsError as exc:
        print(f"workers.launch: {exc}", file=sys.stderr)
        return 2
    if processes == 1:
        os.execv(sys.executable, worker_argv(0, args))  # noqa: S606 - our own interpreter, fixed argv
    return run(args, processes)


if __name__ == "__main__":
    raise SystemExit(main())
