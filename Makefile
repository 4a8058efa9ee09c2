# The two commands of the README: `make demo` runs the pipeline, `make test` runs the lint and the tests.
# Both set everything up first (scripts/bootstrap.sh is a no-op once .venv is current).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup demo lint test bench clean
setup:
	@bash scripts/bootstrap.sh

demo: setup
	SPARK_LOCAL_IP=127.0.0.1 $(VENV)/bin/gr2 demo

# ruff (pinned in pyproject.toml's test extra, configured under [tool.ruff]) before the tests: it takes a
# second, the tests half an hour, and CI (.ci/run calls `make test`) fails on either.
lint: setup
	$(VENV)/bin/ruff check gr2 tests benchmarks scripts

test: lint
	SPARK_LOCAL_IP=127.0.0.1 $(VENV)/bin/python -m pytest -q --timeout=900 $(PYTEST_ARGS)

clean:
	rm -rf lake build *.egg-info .pytest_cache
