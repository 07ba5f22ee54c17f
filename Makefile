# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test setup install translations migrate seed lint worker beat extract-messages clean browser security bandit

## Set everything up on the embedded default (SQLite, jobs in-process) and serve with demo data.
run: setup seed
	$(FLASK) run --host $(HOST) --port $(PORT)

## The whole test suite: lint, then pytest against real PostgreSQL and Redis (and Debian's
## Chromium for the browser tests).
test: install translations browser bandit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bandit on the code (its skips are explained in README.md, Security); part of `make test`.
bandit: install
	$(BIN)/bandit -q -r app workers -c pyproject.toml

## bandit, and pip-audit on the installed packages. pip-audit needs PyPI's or OSV's vulnerability
## data, which this build machine cannot reach (README.md, Security), so it is not part of `make
## test`; an audit that could not check every package fails: it never passes without looking.
security: bandit
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off || { \
	  echo "security: pip-audit found a vulnerable package, or could not check every package" \
	       "(its vulnerability service cannot be reached): failing." >&2; exit 1; }

setup: install translations migrate

## Debian's Chromium and CJK fonts for the browser tests (Playwright's own download does not
## work here); installed once, when missing.
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null \
	  || { $$SUDO apt-get update -q >/dev/null \
	       && $$SUDO apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk >/dev/null; }; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

translations: install
	$(BIN)/pybabel compile -d app/translations --statistics

migrate: install
	$(FLASK) db upgrade

seed: migrate
	$(FLASK) demo seed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Background jobs through Redis (set REDIS_URL, and DATABASE_URL for PostgreSQL).
worker: install
	$(BIN)/celery -A workers worker --loglevel INFO

beat: install
	$(BIN)/celery -A workers beat --loglevel INFO

## Refresh the message catalogues after changing user-facing text.
extract-messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -o app/translations/messages.pot .
	$(BIN)/pybabel update -i app/translations/messages.pot -d app/translations --no-fuzzy-matching

clean:
	rm -rf $(VENV) instance
