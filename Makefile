# The two commands a new user needs: `make demo` (the whole benchmark loop offline) and `make test`.
# Each creates .venv and installs on first use; the stamp makes later runs skip the install
# unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.posebench-installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: install demo test test-slow lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# torch and torchvision must import together (a mismatched pair fails here, not in a test).
	$(PY) -c "import torch, torchvision, torchvision.ops; print('torch', torch.__version__, '/ torchvision', torchvision.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m posebench demo --out demo-out $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	POSEBENCH_RUN_SLOW=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check posebench reposedm tests benchmarks

clean-venv:
	rm -rf $(VENV)
