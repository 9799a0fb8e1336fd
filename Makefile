# Setup is idempotent: each step is redone only when the file it depends on changed.
PYTHON ?= python3
VENV := .venv
PY_STAMP := $(VENV)/.installed
JARS_STAMP := .cache/jars/.fetched
PYTEST_ARGS ?=

.PHONY: setup quickstart test clean-stack

setup: $(PY_STAMP) $(JARS_STAMP)

$(PY_STAMP): pyproject.toml
	@echo "==> Python environment in $(VENV) (first time: about 2 minutes, 1.5 GB)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

$(JARS_STAMP): jvm/pom.xml jvm/kafka/pom.xml jvm/flink/pom.xml jvm/spark/pom.xml
	@echo "==> JVM jars by Maven coordinates into .cache/jars"
	mvn -q -B -f jvm/pom.xml generate-resources
	@touch $@

quickstart: setup
	$(VENV)/bin/harness run scenarios/quick.yaml

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-stack:
	-$(VENV)/bin/harness stack down
