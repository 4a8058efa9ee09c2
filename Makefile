# The two commands of the README: `make demo` runs the pipeline, `make test` runs the tests.
# Both set everything up first (scripts/bootstrap.sh is a no-op once .venv is current).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean
setup:
	@bash scripts/bootstrap.sh

demo: setup
	SPARK_LOCAL_IP=127.0.0.1 $(VENV)/bin/gr2 demo

test: setup
	SPARK_LOCAL_IP=127.0.0.1 $(VENV)/bin/python -m pytest -q --timeout=900 $(PYTEST_ARGS)

clean:
	rm -rf lake build *.egg-info .pytest_cache
