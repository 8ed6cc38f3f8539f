# The two commands of the README. Both set everything up on a fresh machine.
VENV ?= .venv
CASE ?= poisson_lshape
OUT ?= runs/$(CASE)

.PHONY: install demo test lint bench

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

install: $(VENV)/.installed

demo: install   ## train CASE (default poisson_lshape) and write its VTK to OUT
	$(VENV)/bin/pdeml train $(CASE) --out $(OUT)

test: install   ## the test suite (what CI runs)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

lint: install   ## ruff (lint, format), import-linter (the layers), mypy (the core): what CI checks
	PDEML_VENV=$(VENV) bash scripts/lint.sh

bench: install  ## benchmark scripts (slow; not part of CI)
	$(VENV)/bin/python -m pytest -q -m slow
