"""Every `>>>` example in jaxlab's docstrings runs and prints what it shows (doctests in CI)."""

import doctest
import glob
import importlib
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MODULES = sorted(
    os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".")
    for p in glob.glob(os.path.join(ROOT, "jaxlab", "**", "*.py"), recursive=True)
    if ">>> " in open(p).read())


def test_there_are_doctests():
    assert len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name}: no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} doctest examples failed"
