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


def test_readme_launch_example_runs_exactly_as_printed():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Launching an experiment", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    command = block.replace("\\\n", " ").strip()
    assert command.startswith(".venv/bin/python -m experiments.") and "--config.seeds=" in command
    # The README's interpreter is the Makefile's venv; run the same command line with this interpreter.
    command = command.replace(".venv/bin/python", sys.executable, 1)
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = re.search(r"--workdir=(\S+)", command).group(1)
    import json
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["seeds"] == [0, 1, 2] and summary["claims"]
