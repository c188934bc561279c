"""``python manage.py run_all``: the web server, a Celery worker and beat, supervised.

A worker or beat (or the web server) that dies is started again with back-off and the event
is logged (crm.supervisor); the others keep running. Ctrl-C or SIGTERM stops all three.
"""
import os
import signal
import sys

from django.core.management.base import BaseCommand

from crm.supervisor import Supervisor


class Command(BaseCommand):
    help = ("Serve the site and run a Celery worker and beat beside it, restarting any that dies; "
            "Ctrl-C stops all three.")

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="address:port to serve on")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, **options):
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "crm"]
        commands = {
            "web": [python, "manage.py", "runserver", options["addr"], "--noreload"],
            "worker": celery + ["worker", "--loglevel", "INFO", "--concurrency", str(options["concurrency"])],
            "beat": celery + ["beat", "--loglevel", "INFO"],
        }

        def log(line: str) -> None:
            self.stderr.write(f"run_all: {line}")
            self.stderr.flush()

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        # The children have process groups of their own (crm.supervisor): a closed terminal's
        # SIGHUP reaches only this process, which must then stop them rather than orphan them.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        supervisor = Supervisor(commands, env=os.environ.copy(), log=log)
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{options['addr']}/ with a worker and beat; "
                                             "press Ctrl-C to stop."))
        self.stdout.flush()
        supervisor.run(lambda: stopping)
