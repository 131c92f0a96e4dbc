# The two commands of the quick start, and a few more. Each target creates .venv itself when needed.
#   make run    set up, then the whole story on the embedded default: DAYS=120 simulated nights with a drift
#   make test   set up, then ruff and the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DAYS ?= 120
PYTEST_ARGS ?=

.PHONY: setup manifest jars run test lint ui clean-data java

setup: $(STAMP)

java:
	@java -version >/dev/null 2>&1 || { \
	  echo "Java 17 or newer is required by Spark and was not found on PATH."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; \
	  echo "  or any JDK 17+ (for example Temurin), with JAVA_HOME set."; \
	  exit 1; }

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# The dbt manifest the feature assets are defined from: generated, never committed, prepared ahead here (the
# definitions would otherwise parse the dbt project when they load).
manifest: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dagster-dbt project prepare-and-package --file dagster_project/defs/features/project.py

# The Delta jars, fetched once from Maven Central into PLATFORM_JARS_CACHE; later Spark sessions start offline.
jars: setup
	$(BIN)/python -m dagster_project.cli jars

run: java setup manifest jars
	$(BIN)/python -m dagster_project.cli run --days $(DAYS)

lint: setup
	$(BIN)/ruff check .

test: java setup lint manifest jars
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui: setup manifest
	$(BIN)/python -m dagster_project.cli ui

clean-data: setup
	$(BIN)/python -c "import shutil; from dagster_project.settings import get_settings; shutil.rmtree(get_settings().data_root, ignore_errors=True)"
