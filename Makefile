# `make run`: set up and run the main job. `make test`: set up and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPACE ?= l2_dropout
ARGS ?=

.PHONY: setup run test dashboard clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)

setup: $(BIN)/activate
	$(BIN)/python -m pip install -q -e '.[dev]'

run: setup
	$(BIN)/python -m study.run --space $(SPACE) $(ARGS)

# optuna-dashboard on an experiment's Optuna study: make dashboard NAME=l2_dropout [PORT=8080]
dashboard: setup
	$(BIN)/python -m study.dashboard results/$(NAME) $(if $(PORT),--port $(PORT))

test: setup
	RAY_AUTH_MODE=disabled RAY_TMPDIR=/tmp/rayt $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
