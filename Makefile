# make demo: set up .venv if missing, then run the embedded default experiment.
# make test: set up .venv if missing, then run the test suite (what CI runs).
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --constraint constraints.txt torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet --constraint constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/splittune run

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/split_overhead.py
	$(VENV)/bin/python benchmarks/codec.py
	$(VENV)/bin/python benchmarks/planning.py
	$(VENV)/bin/python benchmarks/network.py
	$(VENV)/bin/python benchmarks/schemes.py
	$(VENV)/bin/python benchmarks/fuzz.py

clean:
	rm -rf $(VENV) runs .pytest_cache
