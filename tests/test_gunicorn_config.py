"""gunicorn.conf.py, which the image and docker-compose.yml serve the site with, loads and says
what the README says."""
import os
import subprocess
import sys

from tests.conftest import ROOT


def gunicorn_config(**env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in {"WEB_CONCURRENCY", "GUNICORN_THREADS"}}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "--print-config", "crm.wsgi"],
                            cwd=ROOT, env={**environ, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return {name.strip(): value.strip() for name, value in
            (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)}


def test_gunicorn_config_defaults_to_two_sync_processes():
    config = gunicorn_config()

    assert (config["workers"], config["threads"], config["worker_class"]) == ("2", "1", "sync")
    assert config["bind"] == "['0.0.0.0:8000']" and config["accesslog"] == "-"


def test_gunicorn_config_threads_switch_to_threaded_workers():
    config = gunicorn_config(WEB_CONCURRENCY="3", GUNICORN_THREADS="4")

    assert (config["workers"], config["threads"], config["worker_class"]) == ("3", "4", "gthread")
