"""The README's Python snippets run as written (in one fresh process, in order)."""

import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_readme_python_snippets_run():
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2, "README should show how to import a loss and how to use several devices"
    assert any("from jaxlab." in b and "_loss" in b for b in blocks)
    code = "\n\n".join(blocks) + "\nprint('README_OK')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("README_OK")
