"""Turns every `summary.json` under a results directory into `REPORT.md`, and refreshes README/BUILD_NOTES.

Nothing in a report is typed by hand: claims, numbers, verdicts, tables and figures all come from the
summaries that experiments wrote. `python -m jaxlab.core.report --workdir=results/quick` rebuilds a
report; `--update_docs` rewrites the results blocks of README.md and BUILD_NOTES.md from results/full.
"""

from __future__ import annotations

import os
import re
from typing import Any

from jaxlab.core import registry
from jaxlab.core import summary as summary_lib
from jaxlab.core.metrics import read_json, write_text_atomic

BEGIN, END = "<!-- jaxlab:results:begin -->", "<!-- jaxlab:results:end -->"
MAX_TABLE_ROWS = 60


def fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e}"
        return f"{x:.4g}" if abs(x) >= 1 else f"{x:.4f}".rstrip("0").rstrip(".") if x != 0 else "0"
    return str(x)


def mean_std_str(entry: dict) -> str:
    std = entry.get("std")
    spread = "" if std is None or std != std else f" ± {fmt(std)}"
    return f"{fmt(entry['mean'])}{spread} (n={len(entry['values'])})"


BLOCK_TITLES = {"paper": "Paper claims", "sanity": "Sanity checks (any correct implementation passes these)",
                "variant": "Our own variants (not claims of the paper)"}
CLAIM_HEADER = ["| claim | statement | metric | ours | baseline | difference [90% CI] | p | verdict |",
                "|---|---|---|---|---|---|---|---|"]


def _comparison(b: dict) -> tuple[str, str]:
    if b.get("ci") is None:
        return (fmt(b.get("improvement")) if "improvement" in b else ""), "—"
    lo, hi = b["ci"]
    return f"{fmt(b['improvement'])} [{fmt(lo)}, {fmt(hi)}]", fmt(b["p"])


def _claim_rows(c: dict, prefix: str = "") -> list[str]:
    cid = f"{prefix}{c['id']}"
    if "parts" in c:
        rows = [f"| **{cid}** | {c.get('claim', '')} | | | | | | **{c['verdict']}** |"]
        for p in c["parts"]:
            rows += _claim_rows(p, prefix=f"{cid}/")
        return rows
    if "ours" not in c:      # untestable without numbers
        return [f"| {cid} | {c.get('claim', '')} | {c.get('metric', '')} | | | | | "
                f"{c['verdict']}: {c.get('reason', '')} |"]
    ours = c["ours"]
    metric = c["metric"] + (" ↑" if c.get("higher_is_better") else " ↓")
    if c.get("kind") == "no_worse":
        metric += f" (no worse, margin {fmt(c.get('margin', 0.0))})"
    elif c.get("margin"):
        metric += f" (better by > {fmt(c['margin'])})"
    if c.get("paired"):
        metric += " (paired)"
    rows = []
    for i, b in enumerate(c["baselines"]):
        diff, p = _comparison(b)
        verdict = b.get("verdict", "")
        if b.get("reason"):
            verdict += f": {b['reason']}"
        first = i == 0
        rows.append(f"| {cid if first else ''} | {c.get('claim', '') if first else ''} | {metric if first else ''} | "
                    f"{ours['method'] + ': ' + mean_std_str(ours) if first else ''} | {b['method']}: "
                    f"{mean_std_str(b)} | {diff} | {p} | {verdict} |")
    if len(c["baselines"]) > 1:
        rows.append(f"| | | | | | | | **{c['verdict']}** |")
    return rows


def table_md(rows: list[dict]) -> str:
    if not rows:
        return "_(empty)_"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:MAX_TABLE_ROWS]:
        out.append("| " + " | ".join(fmt(r.get(k, "")) for k in cols) + " |")
    if len(rows) > MAX_TABLE_ROWS:
        out.append(f"\n_{len(rows) - MAX_TABLE_ROWS} more rows in summary.json_")
    return "\n".join(out)


def load_status(workdir: str, exp: registry.Experiment) -> tuple[str, dict | None]:
    """('not implemented' | 'FAILED' | 'missing' | 'done', summary or failure record).

    A failure record or summary that cannot be read marks the experiment FAILED with one line why;
    the rest of the report is still written."""
    if not exp.implemented:
        return "not implemented", None
    d = os.path.join(workdir, exp.name)
    failed, summary = os.path.join(d, "failed.json"), os.path.join(d, "summary.json")
    for path, status in ((failed, "FAILED"), (summary, "done")):
        if not os.path.exists(path):
            continue
        try:
            data = read_json(path)
            if not isinstance(data, dict) or (status == "done" and not isinstance(data.get("claims"), list)):
                raise ValueError("not a summary object with a claims list")
        except (OSError, ValueError) as e:
            return "FAILED", {"error": f"{os.path.basename(path)} is unreadable ({type(e).__name__}: "
                                       f"{' '.join(str(e).split())[:120]})", "wall_time_s": 0.0}
        return status, data
    return "missing", None


def paper_level(summary: dict) -> str:
    """The paper-level verdict of a summary (claims of block "paper"), with the count behind it."""
    claims = summary.get("claims", [])
    paper = [c for c in claims if c.get("block", "paper") == "paper"]
    verdict = summary_lib.paper_verdict(claims)
    ok = sum(c["verdict"] == "reproduced" for c in paper)
    return f"**{verdict}** ({ok}/{len(paper)} paper claims)"


def overall_verdicts(summary: dict) -> str:
    return ", ".join(f"{c['id']}: {c['verdict']}" for c in summary.get("claims", []))


def _cpu(data: dict) -> str:
    """CPU seconds (user + system, children included) when the summary recorded them."""
    cpu = data.get("cpu_time_s")
    return f"{cpu:.0f} CPU-s" if isinstance(cpu, (int, float)) else ""


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower().replace(" ", "-"))


def render(workdir: str, suite: str | None = None, experiments=None) -> str:
    """The whole REPORT.md text for the summaries under `workdir` (one subdirectory per experiment)."""
    exps = list(experiments if experiments is not None else registry.EXPERIMENTS)
    lines = [f"# jaxlab report ({suite or os.path.basename(os.path.normpath(workdir))} suite)", "",
             "Generated by `python -m jaxlab.core.report` from each experiment's `summary.json`. Values are "
             "mean ± std (ddof = 1) over seeds (n = number of seeds). Verdicts are computed by code "
             "(`jaxlab/core/summary.py`): *better* iff the one-sided 95% lower confidence bound of the "
             "improvement (Welch t, or paired t when arms share random numbers) is above 0; *no worse* iff it "
             "is above −margin. The paper-level verdict combines only the paper's own claims; sanity checks "
             "and our variants are listed apart.", "",
             "| experiment | paper | status | paper-level verdict | all claims | wall time (budget) | CPU time |",
             "|---|---|---|---|---|---|---|"]
    sections, toc = [], ["", "Contents:", ""]
    for exp in exps:
        status, data = load_status(workdir, exp)
        paper = f"[{exp.title}](#{_anchor(exp.name)})" + (f" (arXiv {exp.arxiv})" if exp.arxiv else "")
        toc.append(f"- [{exp.name}](#{_anchor(exp.name)})")
        if status == "done":
            wall = data.get("wall_time_s", float("nan"))
            over = " **over budget**" if suite == "quick" and wall > exp.budget_s else ""
            n = len(data.get("claims", []))
            ok = sum(c.get("verdict") == "reproduced" for c in data.get("claims", []))
            lines.append(f"| {exp.name} | {paper} | done | {paper_level(data)} | {ok}/{n} reproduced | "
                         f"{wall:.0f} s ({exp.budget_s:.0f} s){over} | {_cpu(data)} |")
        elif status == "FAILED":
            err = " ".join(str(data.get("error", "")).split())[:200]
            lines.append(f"| {exp.name} | {paper} | **FAILED** | {err} | | {data.get('wall_time_s', 0):.0f} s | |")
        else:
            lines.append(f"| {exp.name} | {paper} | {status} | | | | |")
        sections.append(render_experiment(exp, status, data))
    return "\n".join(lines + toc + [""] + sections) + "\n"


def render_experiment(exp: registry.Experiment, status: str, data: dict | None, fig_prefix: str | None = None) -> str:
    out = [f"## {exp.name}", "", f"**{exp.title}**", "", f"Paper's claim: {exp.claim}", "",
           f"Package: `{exp.package}`"]
    if status == "not implemented":
        return "\n".join(out + ["", "_Not implemented yet._", ""])
    if status == "missing":
        return "\n".join(out + ["", "_No results in this directory (not run)._", ""])
    if status == "FAILED":
        return "\n".join(out + ["", "**FAILED**:", "", "```", str(data.get("error", ""))[-3000:], "```", ""])
    out += ["", f"**Paper-level verdict: {paper_level(data)}**", "",
            f"Seeds: {data.get('seeds')} · config hash `{data.get('config_hash')}` · "
            f"wall time {data.get('wall_time_s', 0):.1f} s", ""]
    if data.get("seed_note"):
        out += [f"What a seed varies: {data['seed_note']}", ""]
    if data.get("headline"):
        out += [f"**Headline:** {data['headline']}", ""]
    claims = data.get("claims", [])
    for block, title in BLOCK_TITLES.items():
        mine = [c for c in claims if c.get("block", "paper") == block]
        if not mine:
            continue
        out += [f"### {exp.name}: {title}", ""] + CLAIM_HEADER
        for c in mine:
            out += _claim_rows(c)
        out.append("")
    notes = [f"- {c['id']}: {c['note']}" for c in claims if c.get("note")]
    if notes:
        out += ["Notes:"] + notes
    for name, rows in data.get("tables", {}).items():
        out += ["", f"### {exp.name} table: {name}", "", table_md(rows)]
    prefix = exp.name + "/" if fig_prefix is None else fig_prefix
    for fig in data.get("figures", []):
        out += ["", f"![{os.path.basename(fig)}]({prefix}{fig})"]
    return "\n".join(out) + "\n"


def render_run(run_dir: str) -> str:
    """A report for one run's workdir (e.g. results/adhoc/picce), figures linked relative to it."""
    summary = os.path.join(run_dir, "summary.json")
    if not os.path.exists(summary):
        raise FileNotFoundError(f"run directory {run_dir!r} has no summary.json (has the run finished?)")
    data = read_json(summary)
    name = data.get("paper") or os.path.basename(os.path.normpath(run_dir))
    try:
        exp = registry.get(name)
    except ValueError:
        exp = registry.Experiment(name, name, "", "", "")
    return render_experiment(exp, "done", data, fig_prefix="")


def write_report(workdir: str, suite: str | None = None) -> str:
    path = os.path.join(workdir, "REPORT.md")
    write_text_atomic(path, render(workdir, suite))
    return path


def write_run_report(run_dir: str) -> str:
    path = os.path.join(run_dir, "REPORT.md")
    write_text_atomic(path, render_run(run_dir))
    return path


def papers_table(full_dir: str = "results/full") -> str:
    """The README/BUILD_NOTES table: package, experiment, colab, status, headline from results/full."""
    rows = ["| # | paper | package | experiment | colab | status | paper-level verdict and headline (results/full) |",
            "|---|---|---|---|---|---|---|"]
    for i, exp in enumerate(registry.EXPERIMENTS):
        status, data = load_status(full_dir, exp)
        headline = ""
        if status == "done":
            headline = (paper_level(data) + ". " + (data.get("headline") or "")).replace("|", "/")
            status = f"full results ({len(data.get('seeds', []))} seeds)"
            if data.get("partial"):
                status = f"partial full results: {data['partial']}"
        elif status == "missing":
            status = "implemented (quick)"
        exp_link = f"`experiments/{exp.name}.py`" if exp.implemented else "—"
        colab = f"`{exp.colab}`" if exp.colab else "—"
        arxiv = f" ([{exp.arxiv}](https://arxiv.org/abs/{exp.arxiv}))" if exp.arxiv else ""
        num = str(i) if exp.arxiv else "substrate"
        rows.append(f"| {num} | {exp.title}{arxiv} | `{exp.package}` | {exp_link} | {colab} | {status} | {headline} |")
    return "\n".join(rows)


def update_docs(paths=("README.md", "BUILD_NOTES.md"), full_dir: str = "results/full") -> list[str]:
    """Rewrites the text between the results markers of each file from results/full; returns files changed."""
    changed = []
    block = f"{BEGIN}\n{papers_table(full_dir)}\n{END}"
    for path in paths:
        if not os.path.exists(path):
            continue
        text = open(path).read()
        if BEGIN not in text or END not in text:
            continue
        new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
        if new != text:
            write_text_atomic(path, new)
            changed.append(path)
    return changed


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=None, help="default results/quick (results/full with --update_docs)")
    parser.add_argument("--run", default=None, help="render one run's workdir (its summary.json) instead")
    parser.add_argument("--update_docs", action="store_true")
    args = parser.parse_args(argv)
    from jaxlab.core.app import fail
    try:
        if args.run:
            print(write_run_report(args.run))
            return
        if args.workdir is None:
            args.workdir = "results/full" if args.update_docs else "results/quick"
        if not os.path.isdir(args.workdir):
            fail(f"results workdir {args.workdir!r} does not exist (run `python -m jaxlab.reproduce "
                 f"--workdir={args.workdir}` first, or pass the folder that holds the experiments)")
        print(write_report(args.workdir))
        if args.update_docs:
            print(update_docs())
    except (OSError, ValueError) as e:   # a missing run folder, an unwritable REPORT.md: one line, exit 2
        if os.environ.get("JAXLAB_DEBUG"):
            raise
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
