"""Every docstring example runs: doctest over each module of pdeml (the core, the methods, the
families), with ``pl``, ``np`` and ``torch`` imported as the examples name them."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest
import torch

import pdeml as pl

#: modules that are entry points, not libraries (importing them runs the CLI)
SKIP = {"pdeml.__main__"}


def _modules() -> list[str]:
    out = []
    for root in ("pdeml", "pdeml.solvers", "pdeml.operators", "pdeml.samplers", "pdeml.families"):
        pkg = importlib.import_module(root)
        out.append(root)
        for m in pkgutil.walk_packages(pkg.__path__, prefix=root + "."):
            if m.name not in SKIP and not any(m.name.startswith(r + ".") for r in ("pdeml.cases",)):
                out.append(m.name)
    return sorted(set(out))


def _examples(name: str) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return [t for t in tests if t.examples and t.name.startswith(name)]


MODULES = [name for name in _modules() if _examples(name)]


def test_the_examples_are_found():
    assert len(MODULES) >= 30 and "pdeml.options" in MODULES and "pdeml.solvers.pinn" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in _examples(name):
        test.globs.update({"pl": pl, "np": np, "torch": torch})
        runner.run(test, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0
    assert failed == 0, "".join(report)
