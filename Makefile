# Setup is idempotent: each step is redone only when the file it depends on changed.
PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
JARS_STAMP := .cache/jars/.fetched
BROWSER_STAMP := .cache/.browser
PYTEST_ARGS ?=

.PHONY: setup quickstart test clean-stack

setup: $(PY_STAMP) $(JARS_STAMP) $(BROWSER_STAMP)

$(PY_STAMP): pyproject.toml
	@echo "==> Python environment in $(VENV) (first time: about 2 minutes, 1.5 GB)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

$(JARS_STAMP): jvm/pom.xml jvm/kafka/pom.xml jvm/flink/pom.xml jvm/spark/pom.xml
	@echo "==> JVM jars by Maven coordinates into .cache/jars"
	mvn -q -B -f jvm/pom.xml generate-resources
	@touch $@

# Headless Chromium renders the HTML reports in the report tests. Debian's package needs root; without it the
# browser test is skipped locally (and fails in CI, which runs as root).
$(BROWSER_STAMP):
	@mkdir -p .cache
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "==> chromium from Debian's packages (for the report tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: chromium not installed (apt-get install chromium needs root); report browser test will skip"; fi
	@touch $@

quickstart: setup
	$(VENV)/bin/harness run scenarios/quick.yaml

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-stack:
	-$(VENV)/bin/harness stack down
