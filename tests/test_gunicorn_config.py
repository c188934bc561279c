"""gunicorn.conf.py, which the image and docker-compose.yml serve the site with, loads and says
what the README says."""
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_gunicorn_config_is_valid_and_uses_threads():
    env = {**os.environ, "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "--print-config", "crm.wsgi"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    config = {name.strip(): value.strip() for name, value in
              (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)}
    assert config["workers"] == "3" and config["threads"] == "4"
    assert config["worker_class"] == "gthread" and config["bind"] == "['0.0.0.0:8000']"
    assert config["keepalive"] == "5"
