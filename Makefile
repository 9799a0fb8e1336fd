# Setup is idempotent: each step is redone only when the file it depends on changed.
PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
SETUP_STAMP := .cache/.setup
BROWSER_STAMP := .cache/.browser
PYTEST_ARGS ?=

.PHONY: setup quickstart test test-long clean-stack

setup: $(PY_STAMP) $(SETUP_STAMP) $(BROWSER_STAMP)

$(PY_STAMP): pyproject.toml
	@echo "==> Python environment in $(VENV) (first time: about 2 minutes, 1.5 GB)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

# What the stack and every engine folder need (pom.xml -> .cache/jars/<name>, requirements.txt -> pip).
$(SETUP_STAMP): $(PY_STAMP) pyproject.toml jvm/kafka/pom.xml $(wildcard pipelines/*/pom.xml pipelines/*/requirements.txt)
	@echo "==> harness setup: jars and engine requirements"
	@mkdir -p .cache
	$(VENV)/bin/harness setup
	@touch $@

# Headless Chromium renders the HTML reports in the report tests. Debian's package needs root; without it the
# browser tests skip locally and fail in CI (.ci/run requires the browser). The stamp is written only once
# chromium is on PATH, so a machine without it tries again on the next `make setup`.
$(BROWSER_STAMP):
	@mkdir -p .cache
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "==> chromium from Debian's packages (for the report tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		&& command -v chromium >/dev/null && touch $@; \
	else echo "note: chromium not installed (apt-get install chromium needs root); report browser tests will skip"; fi

quickstart: setup
	$(VENV)/bin/harness run scenarios/quick.yaml

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The runs marked `long` (about 4 minutes): CI runs them after `make test`.
test-long: setup
	$(VENV)/bin/python -m pytest -m long $(PYTEST_ARGS)

clean-stack:
	-$(VENV)/bin/harness stack down
