# Two commands do all the set-up from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test venv migrate lint browser bench-import bench-completejourney clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

migrate: venv
	$(PY) manage.py migrate --no-input

## run: install, migrate, create demo users, seed demo data if empty, train, then serve
## http://127.0.0.1:8000 with a Celery worker and beat (Ctrl-C stops all of them).
run: migrate
	$(PY) manage.py collectstatic --no-input -v0
	$(PY) manage.py bootstrap_demo --train
	$(PY) manage.py run_all

## browser: Debian's Chromium for the end-to-end tests (Playwright drives /usr/bin/chromium;
## it cannot download browsers of its own here).
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "Install Chromium (apt-get install chromium) for the browser tests"; exit 1; }

## test: the whole suite on the embedded defaults (SQLite, embedded SQLite broker), or on
## DATABASE_URL / REDIS_URL when they are set.
test: venv browser
	CRM_VAR_DIR=$(CURDIR)/var/test $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/bandit -q -c bandit.yaml -r crm ml
	$(VENV)/bin/bandit -q -c bench/bandit.yaml -r bench

bench-import: venv
	$(PY) bench/import_bench.py

bench-completejourney: venv
	$(PY) bench/completejourney.py

clean:
	rm -rf var/test .pytest_cache
