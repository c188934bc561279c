"""Keep a few child processes running: the supervisor behind ``manage.py run_all``.

A child that exits (a worker killed by the kernel, beat failing on a locked database) is
started again after a back-off that doubles on each quick failure (1 s, 2 s, 4 s … at most
60 s) and resets once the child has stayed up for a minute. Every exit and every start is
logged with the child's name, pid and exit status. One child's death never stops the
others: the web server keeps serving while the worker comes back. Only a stop request
(Ctrl-C, SIGTERM) stops them all: SIGTERM first, SIGKILL after a grace period.

Each child leads a process group of its own, for two reasons: a Ctrl-C in the terminal reaches
only the supervisor, which stops each child once (a Celery worker that got SIGINT and then
SIGTERM would escalate to a cold shutdown); and when a child dies, whatever it left behind
(a worker's pool processes, still holding a task) is killed with its group before the new one
starts, so two generations never work side by side.
"""
from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - fixed commands of our own, no shell
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Child:
    name: str
    command: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restarts: int = 0
    start_at: float = 0.0  # when a stopped child may start again (monotonic seconds)


def describe_exit(code: int) -> str:
    """'exit 1' or 'killed by SIGKILL' for a Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a child's process group (it led the group; it has exited)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], env: dict | None = None,
                 log: Callable[[str], None] = print, min_backoff: float = 1.0, max_backoff: float = 60.0,
                 stable_after: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.children = [Child(name, list(cmd)) for name, cmd in commands.items()]
        self.env, self.log, self.clock = env, log, clock
        self.min_backoff, self.max_backoff, self.stable_after = min_backoff, max_backoff, stable_after

    def backoff(self, child: Child) -> float:
        """Seconds to wait before the next start: doubles per quick failure, capped."""
        return min(self.max_backoff, self.min_backoff * 2 ** max(0, child.quick_failures - 1))

    def _start(self, child: Child) -> None:
        # Our own fixed commands (no shell, no user input).
        child.proc = subprocess.Popen(child.command, env=self.env, process_group=0)  # noqa: S603 # nosec B603
        child.started_at = self.clock()
        again = f", restart {child.restarts}" if child.restarts else ""
        self.log(f"{child.name} {'restarted' if child.restarts else 'started'} (pid {child.proc.pid}{again})")

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def check(self) -> None:
        """Notice children that exited, and start those whose back-off is over."""
        now = self.clock()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                ran = now - child.started_at
                child.quick_failures = child.quick_failures + 1 if ran < self.stable_after else 1
                delay = self.backoff(child)
                self.log(f"{child.name} stopped ({describe_exit(child.proc.returncode)}) after {ran:.0f} s; "
                         f"starting it again in {delay:g} s")
                _kill_group(child.proc.pid)
                child.proc, child.start_at = None, now + delay
                child.restarts += 1
            elif child.proc is None and now >= child.start_at:
                self._start(child)

    def pids(self) -> dict[str, int | None]:
        return {c.name: (c.proc.pid if c.proc else None) for c in self.children}

    def stop_all(self, grace: float = 15.0) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children:
            if child.proc is not None:
                _kill_group(child.proc.pid)

    def run(self, should_stop: Callable[[], bool], interval: float = 0.5) -> None:
        self.start_all()
        try:
            while not should_stop():
                self.check()
                time.sleep(interval)
        finally:
            self.stop_all()
