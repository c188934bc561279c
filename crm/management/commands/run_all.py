"""``python manage.py run_all``: the web server, a Celery worker and beat, stopped together by Ctrl-C."""
import os
import signal
import subprocess  # nosec B404
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the site and run a Celery worker and beat beside it (development); Ctrl-C stops all three."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, **options):
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "crm"]
        commands = {
            "worker": celery + ["worker", "--loglevel", "INFO", "--concurrency", str(options["concurrency"])],
            "beat": celery + ["beat", "--loglevel", "INFO"],
            "web": [python, "manage.py", "runserver", options["addr"], "--noreload"],
        }
        procs = {}
        # Our own fixed commands (no shell, no user input): bandit B404/B603 are silenced for them.
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, env=os.environ.copy())  # noqa: S603 # nosec B603
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{options['addr']}/ with a worker and beat; "
                                             "press Ctrl-C to stop."))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} stopped (exit {proc.returncode}); stopping the others")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
