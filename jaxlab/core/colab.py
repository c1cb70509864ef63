"""The one install cell every notebook in colabs/ starts with, and a tool that puts it there.

    python -m jaxlab.core.colab colabs/*.ipynb     # rewrites each notebook's install cell in place

On Colab the cell installs jaxlab (with every extra) from the source named in setup.cfg (`url`);
anywhere else it does nothing, since `make reproduce` already made the virtualenv.
"""

from __future__ import annotations

import configparser
import os
import re
import sys

MARKER = "# jaxlab install cell"
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def source_url(setup_cfg: str = os.path.join(_ROOT, "setup.cfg")) -> str:
    cfg = configparser.ConfigParser()
    if not cfg.read(setup_cfg) or not cfg.has_option("metadata", "url"):
        raise ValueError(f"setup_cfg: expected a [metadata] url in {setup_cfg!r}")
    return cfg.get("metadata", "url")


def install_cell(url: str | None = None) -> str:
    url = url or source_url()
    return (f"{MARKER} (identical in every notebook; runs only on Colab)\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            "    import subprocess\n"
            f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"jaxlab[all] @ git+{url}\"],\n"
            "                   check=True)")


_GUARD = re.compile(r"^if ['\"]google\.colab['\"] in sys\.modules:.*\n((?:[ \t]+.*\n?)*)", re.M)


def normalize(path: str) -> bool:
    """Puts the install cell first among the code cells and drops other Colab pip blocks and forced
    matplotlib backends; returns whether the file changed."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    cells = [c for c in nb.cells if not (c.cell_type == "code" and c.source.startswith(MARKER))]
    for c in cells:
        if c.cell_type != "code":
            continue
        src = _GUARD.sub("", c.source + "\n").rstrip("\n")
        src = re.sub(r"^\s*matplotlib\.use\([^)]*\)\s*\n?", "", src + "\n", flags=re.M).rstrip("\n")
        c.source = src
    first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    cell = nbformat.v4.new_code_cell(install_cell())
    cell["id"] = "jaxlab-install"
    if nb.get("nbformat_minor", 0) < 5:
        cell.pop("id")
    cells.insert(first_code, cell)
    nb.cells = cells
    after = nbformat.writes(nb)
    if after != before:
        with open(path, "w") as f:
            f.write(after)
        return True
    return False


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, "changed" if normalize(p) else "unchanged")
