"""crm.supervisor with real child processes: restarts with back-off, leftovers killed, stop stops all."""
import re
import sys
import time

import psutil

from crm.supervisor import Supervisor
from tests.conftest import wait_for

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(120)"]


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _run_for(supervisor, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.02)


def test_supervisor_restarts_a_failing_child_with_doubling_backoff_and_leaves_the_others_alone():
    lines = []
    supervisor = Supervisor({"crash": [PY, "-c", "raise SystemExit(3)"], "web": SLEEPER}, log=lines.append,
                            min_backoff=0.2, max_backoff=0.8, stable_after=30)
    supervisor.start_all()
    web = supervisor.pids()["web"]
    try:
        _run_for(supervisor, 4)
        delays = [float(m) for m in re.findall(r"crash stopped \(exit 3\) after \d+ s; starting it again in ([\d.]+) s",
                                                "\n".join(lines))]
        assert delays[:4] == [0.2, 0.4, 0.8, 0.8]
        assert any(re.fullmatch(r"crash restarted \(pid \d+, restart 3\)", line) for line in lines)
        assert supervisor.pids()["web"] == web and psutil.pid_exists(web)
        assert not any(line.startswith("web stopped") for line in lines)
    finally:
        supervisor.stop_all(grace=5)
    assert _gone(web)


def test_supervisor_backoff_resets_once_a_child_stayed_up():
    lines = []
    supervisor = Supervisor({"beat": [PY, "-c", "import time; time.sleep(0.6)"]}, log=lines.append,
                            min_backoff=0.1, max_backoff=5, stable_after=0.3)
    supervisor.start_all()
    try:
        _run_for(supervisor, 3)
    finally:
        supervisor.stop_all(grace=5)
    delays = re.findall(r"beat stopped \(exit 0\) after \d+ s; starting it again in ([\d.]+) s", "\n".join(lines))
    assert len(delays) >= 2 and set(delays) == {"0.1"}


def test_supervisor_kills_what_a_dead_child_left_behind_before_starting_it_again(tmp_path):
    """A worker killed with SIGKILL leaves its pool processes: they go with its process group."""
    pid_file = tmp_path / "grandchild.pid"
    spawn = (f"import subprocess, sys; p = subprocess.Popen({SLEEPER!r}); "
             f"open({str(pid_file)!r}, 'w').write(str(p.pid)); raise SystemExit(1)")
    lines = []
    supervisor = Supervisor({"worker": [PY, "-c", spawn]}, log=lines.append, min_backoff=30)
    supervisor.start_all()
    try:
        grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=20,
                                  interval=0.05, what="the child to start its own child"))
        wait_for(lambda: (supervisor.check(), any("worker stopped (exit 1)" in line for line in lines))[1],
                 timeout=20, interval=0.05, what="the supervisor to see the child exit")
        wait_for(lambda: _gone(grandchild), timeout=5, interval=0.05, what="the grandchild to be killed")
    finally:
        supervisor.stop_all(grace=5)


def test_supervisor_stop_all_stops_every_child_and_their_children(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    spawn = (f"import subprocess, time; p = subprocess.Popen({SLEEPER!r}); "
             f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    supervisor = Supervisor({"web": SLEEPER, "worker": [PY, "-c", spawn]}, log=lambda line: None)
    supervisor.start_all()
    grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=20, interval=0.05,
                              what="the worker to start its own child"))
    children = list(supervisor.pids().values())
    started = time.monotonic()
    supervisor.stop_all(grace=5)
    assert time.monotonic() - started < 5  # SIGTERM is enough for these
    # SIGKILL is delivered asynchronously: the grandchild is gone a moment later.
    wait_for(lambda: all(_gone(pid) for pid in [*children, grandchild]), timeout=5, interval=0.05,
             what="every child and grandchild to be gone")
