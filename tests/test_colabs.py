"""Every notebook in colabs/ runs top to bottom in smoke mode (JAXLAB_SMOKE=1) without a cell error,
from a temporary directory (so a notebook that only works from the repo root fails), starting with the
one install cell of `jaxlab.core.colab` and forcing no matplotlib backend.

A notebook can also name strings its outputs must contain, in its metadata:
`{"jaxlab": {"expect": ["class mass by J", ...]}}` (so a notebook that silently prints nothing fails).

Smoke mode is compile-bound (many small programs, a few steps each), so the kernel runs with most XLA
optimisations off (`JAX_DISABLE_MOST_OPTIMIZATIONS=1`, as `jaxlab.core.app.fast_compile`): the math is the same
up to reassociation and the compiles cost about half. A notebook whose smoke run trains for many steps declares
`{"jaxlab": {"smoke_optimized": true}}` and keeps the optimisations and XLA's default CPU fusion emitters
(`make test` compiles with the older ones, which compile faster but ran the ARS notebook's 1,200 SFT steps in
142 CPU-s, against 108-121 CPU-s with the default emitters in earlier suites).
"""

import glob
import json
import os

import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "colabs", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_starts_with_the_one_install_cell(path):
    import nbformat

    from jaxlab.core import colab
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == colab.install_cell(), f"{path}: run `python -m jaxlab.core.colab {path}`"
    assert "jaxlab/jaxlab" in colab.install_cell() and colab.source_url() in code[0].source
    for c in code:
        assert "matplotlib.use(" not in c.source, f"{path}: a notebook must not force a matplotlib backend"
        if c is not code[0]:
            assert "pip install" not in c.source, f"{path}: only the install cell installs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, monkeypatch, tmp_path):
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # notebooks ship without outputs; pip lines are guarded behind a Colab check
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path}: commit notebooks without outputs"
            for line in cell.source.splitlines():
                if "pip install" in line:
                    assert "google.colab" in cell.source, f"{path}: unguarded pip install: {line}"
    monkeypatch.setenv("JAXLAB_SMOKE", "1")
    if nb.metadata.get("jaxlab", {}).get("smoke_optimized", False):
        monkeypatch.delenv("JAX_DISABLE_MOST_OPTIMIZATIONS", raising=False)
        from jaxlab.core.testing import FAST_COMPILE_XLA_FLAG
        flags = os.environ.get("XLA_FLAGS", "").replace(FAST_COMPILE_XLA_FLAG, "").strip()
        monkeypatch.setenv("XLA_FLAGS", flags)        # and XLA's default CPU emitters (tests/conftest.py)
    else:
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any cell error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, json.dumps(errors)[:2000]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    for needle in nb.metadata.get("jaxlab", {}).get("expect", []):
        assert needle in text, f"{path}: expected output containing {needle!r}"
