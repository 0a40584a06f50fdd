# `make demo` and `make test` each do all set-up from a fresh clone: a .venv with torch pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test docs faults bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	# deepspeed builds against the installed torch: without --no-build-isolation its build would fetch another.
	# Its CPU shared-memory op is compiled here (DS_BUILD_SHM_COMM=1; --no-cache-dir, as a cached wheel may lack
	# it), so that no test JIT-compiles it into ~/.cache/torch_extensions, where a killed build leaves a lock that
	# every later start of the engine waits on.
	DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 $(PIP) install --quiet --no-cache-dir \
		--no-build-isolation -c constraints.txt deepspeed
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.digits.main fit --config examples/digits/config.yaml

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

# Every fault-injection point (SIGKILL in a step, in validation, in a checkpoint or logger write, then resume), as a
# table, with synchronous then background (AsyncCheckpointIO) checkpoint writes; `make test` runs a sample of them.
faults: $(STAMP)
	$(PY) tests/faults.py
	$(PY) tests/faults.py --async

# The documentation site, into site/; --strict turns a broken link or API reference into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

bench: $(STAMP)
	$(PY) bench/overhead.py
	$(PY) bench/cost_table.py
	$(PY) bench/import_time.py
	$(PY) bench/checkpoint.py
	$(PY) bench/checkpoint_sizes.py
	$(PY) bench/resume_skip.py
	$(PY) bench/ddp.py

clean:
	rm -rf $(VENV) build site *.egg-info
