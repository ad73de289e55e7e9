"""``python -m analysis.report results/<name>``: a self-contained HTML report (figures embedded as
base64 PNG) and a Markdown report (figures linked from ``figures/``), both written next to the
summary in ``results/<name>/analysis/`` (``report.html``, ``report.md``).

Runs :func:`analysis.summarize.summarize` first (same options), so it needs only the trial table.
"""
from __future__ import annotations

import argparse
import base64
import html
import logging
import re
import shlex
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from study import cli

from . import budget_curves as BC
from . import gaps as G
from .conclude import conclusions
from .groups import GROUP_KEYS, title
from .stats import TESTS
from .summarize import BAD_INPUT, Summary, add_options, check_options, key_table, print_state, summarize

FIGURE_TEXT = {
    "curves": "Learning curves per technique: training loss/accuracy measured clean (eval mode, fixed "
              "training sample) and as trained (dropout/augmentation on), and validation; mean over seeds "
              "with a 95% bootstrap CI band. The study's Figures 1–10 in one grid.",
    "gaps": "Final-epoch validation loss, loss gap and accuracy gap per technique: dots are seeds, the "
            "diamond the mean with its 95% bootstrap CI; p-values compare with no regularization.",
    "strength": "Regularization strength vs validation loss and loss gap for each swept parameter "
                "(search phase, each trial at the last epoch it trained).",
    "asha": "ASHA's view of the search: validation curves of all trials by final status, rung epochs, "
            "and the epochs each trial was given.",
    "importances": "Optuna parameter importances of the sweep objective, for the whole study and per regularizer.",
}


def _hms(seconds: Any) -> str:
    try:
        return str(timedelta(seconds=round(float(seconds))))
    except (TypeError, ValueError):
        return "?"


def setup_items(s: Summary) -> list[tuple[str, str]]:
    """(label, text) pairs describing the experiment, from experiment.json and the trial table."""
    e = s.experiment
    t = s.trials
    items: list[tuple[str, str]] = []
    name = e.get("name") or e.get("experiment") or (t["experiment"].iloc[0] if len(t) else s.results_dir.name)
    items.append(("Experiment", f"{name} (space: {e.get('space', '?')})"))
    if e.get("command"):
        cmd = e["command"]
        items.append(("Command", f"`{shlex.join(map(str, cmd)) if isinstance(cmd, list) else cmd}`"))
    groups = ", ".join(title(k) for k in t[GROUP_KEYS].drop_duplicates().itertuples(index=False))
    items.append(("Task / dataset / model", groups))
    fixed = e.get("fixed") or e.get("fixed_settings") or {}
    if fixed:
        items.append(("Fixed settings", ", ".join(f"{k}={v}" for k, v in fixed.items())))
    srch = e.get("search") or e.get("search_settings") or {}
    if srch:
        items.append(("Search", ", ".join(f"{k}={v}" for k, v in srch.items())))
    design = design_statement(e)
    if design:
        items.append(("Design", design))
    items.append(("Budget", G.budget_statement(s.budget)))
    if not s.budget_curves.empty:
        items.append(("Budget curves", BC.ranking_statement(s.budget_curves) + " (expected best validation loss "
                      "of n search trials, Dodge et al. 2019; figures/budget_curves, budget_curves.csv)"))
    planned = e.get("budget_per_regularizer")
    if planned:
        items.append(("Planned search trials per type (experiment.json)",
                      ", ".join(f"{k}: {v}" for k, v in planned.items())
                      if isinstance(planned, dict) else str(planned)))
    seeds = G.seeds_used(t)
    src = "confirmation phase" if (s.sources["source"] == G.SOURCE_CONFIRM).all() else \
        "confirmation phase where available, else the best search trial"
    if (e.get("confirm") or {}).get("source") == "grid":
        src = "the grid's runs"
    items.append(("Seeds", f"{', '.join(map(str, seeds))} ({src})"))
    hw = e.get("hardware") or {}
    if hw:
        gpus = hw.get("gpus") or hw.get("gpu_names") or []
        items.append(("Hardware", f"{hw.get('cpu_count', '?')} CPUs; GPUs: {', '.join(map(str, gpus)) or 'none'}"))
    if "wall_time_s" in e:
        items.append(("Wall time", f"{_hms(e['wall_time_s'])} ({e.get('start_time', '?')} → {e.get('end_time', '?')})"))
    tt = float(t["epoch_time_s"].sum()) if "epoch_time_s" in t.columns else float("nan")
    if tt == tt:
        items.append(("Training time summed over trials", _hms(tt)))
    v = e.get("versions") or {}
    if v:
        items.append(("Versions", ", ".join(f"{k} {val}" for k, val in v.items())))
    st = s.settings
    items.append(("Statistics", f"95% percentile bootstrap CIs over seeds ({st['n_boot']} resamples, seed "
                                f"{st['seed']}); difference to none: bootstrap CI and "
                                f"{TESTS[st['test']][0]}"
                                f"{' (paired design: runs matched by seed)' if TESTS[st['test']][1] else ''}, "
                                "Holm-adjusted p-values in gaps.csv"))
    return items


def design_statement(e: dict[str, Any]) -> str:
    """How the compared runs were made, from experiment.json: a fair comparison (study.comparison),
    a grid of fixed configurations, or one search over the techniques."""
    srch = e.get("search") if isinstance(e.get("search"), dict) else {}
    conf = e.get("confirm") if isinstance(e.get("confirm"), dict) else {}
    seeds = conf.get("seeds") or []
    same = ""
    if seeds:
        same = f" Every configuration ran the same {len(seeds)} seeds ({', '.join(map(str, seeds))})"
        same += (": seed k gives every technique the same initial weights and the same data order, so the runs "
                 "are paired by seed." if e.get("paired_seeds") else
                 " (recorded before regstudy gave every technique the same initial weights and data order at "
                 "one seed: the runs share their seeds, nothing more).")
    if srch.get("kind") == "grid" or conf.get("source") == "grid":
        return ("Fixed configurations from the space's grid (no search, no early stopping; "
                f"{len(conf.get('configs') or [])} configurations)." + same)
    if srch.get("trials_per_technique"):
        k = conf.get("top_k", 1)
        confirmed = (f" The best {'trial' if k == 1 else f'{k} trials'} of each technique "
                     f"{'was' if k == 1 else 'were'} re-run at full budget." if conf.get("configs") else
                     " No confirmation phase: each technique's numbers are its best search trial's.")
        return (f"Comparison by construction: every technique got exactly {srch['trials_per_technique']} search "
                "trials, each technique its own TPE study and its own ASHA (a trial is stopped only by trials of "
                "its own technique), all interleaved on one cluster." + confirmed + same)
    if "regularizer" in (e.get("searched") or []):
        return ("One TPE search chose among the techniques (a categorical choice) with one ASHA over all trials: "
                "techniques can get unequal budgets; a comparison space (compare:) gives equal ones." + same)
    return same.strip()


def _budget_display(bt: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in (*GROUP_KEYS, "regularizer", "planned", "search_trials", "completed", "stopped",
                        "errored", "diverged", "interrupted", "running", "search_epochs", "full_budget_epochs",
                        "epochs_fraction", "search_time_s",
                        "confirm_runs", "confirm_seeds") if c in bt.columns]
    d = bt[cols].copy()
    if "search_time_s" in d:
        d["search_time_s"] = d["search_time_s"].round(1)
    if "epochs_fraction" in d:
        d["epochs_fraction"] = d["epochs_fraction"].round(3)
    return d


def _key_blocks(wide: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The gap summary's display, one (heading, table) per task/dataset/model group."""
    if wide.empty:
        return []
    return [(title(key), key_table(g, group=False)) for key, g in wide.groupby(GROUP_KEYS, sort=False)]


def build(s: Summary) -> dict[str, Any]:
    """The report's content, independent of the output format."""
    return {
        "title": f"Regularization study — {s.experiment.get('name') or s.results_dir.name}",
        "state": s.state,
        "epoch": s.settings.get("epoch", 25),
        "setup": setup_items(s),
        "budget": _budget_display(s.budget),
        "table1_md": s.table1_md,
        "gaps": s.gaps,
        "test": s.settings["test"],
        "table1_blocks": [(title(key), g) for key, g in s.table1.groupby(GROUP_KEYS, sort=False)],
        "key_blocks": _key_blocks(s.gaps),
        "conclusions": conclusions(s.gaps, alpha=s.settings.get("alpha", 0.05), test=s.settings["test"]),
        "figures": {k: v for k, v in s.figures.items()},
        "notes": s.notes,
    }


def to_markdown(c: dict[str, Any], *, svg: bool = True) -> str:
    """The report as Markdown; ``svg``: link each figure's SVG twin too (the published copy has
    PNGs only)."""
    out = [f"# {c['title']}", "", f"**State: {_state_text(c['state'])}**", "", "## Setup", ""]
    out += [f"- **{k}:** {v}" for k, v in c["setup"]]
    out += ["", "### Budget per regularizer type", "", G.markdown_table(c["budget"]), ""]
    out += ["## Table 1 analogue", "", c["table1_md"].replace("### ", "### "), ""]
    out += ["## Gap summary (final epoch)", "", "Mean [95% bootstrap CI] over seeds; Δ = technique − none; "
            "full numbers (best epoch, clean/as-trained train metrics, Holm p) in `gaps.csv`.", ""]
    for name, key in c["key_blocks"]:
        out += [f"### {name}", "", G.markdown_table(key), ""]
    out += ["## Conclusion", ""] + [f"- {x}" for x in c["conclusions"]] + [""]
    out += ["## Figures", ""]
    for name, paths in c["figures"].items():
        png = next((p for p in paths if p.suffix == ".png"), None)
        if png is None:
            continue
        base = name.split("_")[0]
        out += [f"### {name}", "", FIGURE_TEXT.get(base, ""), "",
                f"![{name}](figures/{png.name})", *([f"([SVG](figures/{png.stem}.svg))"] if svg else []), ""]
    if c["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in c["notes"]] + [""]
    return "\n".join(out)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.85em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}
img{display:block;max-width:100%;height:auto;border:1px solid #eee}
.scroll{overflow-x:auto;max-width:100%}
nav{background:#fafafa;border:1px solid #e4e4e4;padding:0.3em 1em;margin:1em 0;display:inline-block}
nav ol{margin:0.3em 0;padding-left:1.4em}
nav ol ol{font-size:0.9em}
h2,h3{scroll-margin-top:0.5em}
code{background:#f5f5f5;padding:1px 4px}
.caption{color:#555;font-size:0.9em}
.note{color:#8a5300}
.unfinished{color:#a00000;border:2px solid #a00000;padding:0.5em}
"""


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the generated text uses: **bold** and `code`."""
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _table(frame: pd.DataFrame, **kw) -> str:
    """A table that scrolls in its own box when wider than the page (the budget table is)."""
    return f"<div class='scroll'>{frame.to_html(index=False, **kw)}</div>"


def _contents(body: list[str]) -> str:
    """A contents list of the report's h2 sections (and the figures under theirs)."""
    items, open_sub = [], False
    for m in re.finditer(r"<h([23]) id='([^']+)'>(.*?)</h\1>", "\n".join(body)):
        level, anchor, text = m.groups()
        if level == "2":
            items.append(("</ol></li>" if open_sub else "</li>") if items else "")
            items.append(f"<li><a href='#{anchor}'>{text}</a>")
            open_sub = False
        else:
            items.append("" if open_sub else "<ol>")
            items.append(f"<li><a href='#{anchor}'>{text}</a></li>")
            open_sub = True
    items.append("</ol></li>" if open_sub else "</li>")
    return "<nav><strong>Contents</strong><ol>" + "".join(items) + "</ol></nav>"


def _h2(text: str) -> str:
    return f"<h2 id='{re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')}'>{html.escape(text)}</h2>"


def to_html(c: dict[str, Any]) -> str:
    head = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(c['title'])}</title>"
            f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(c['title'])}</h1>",
            f"<p class='{'state' if c['state'].state == 'finished' else 'state unfinished'}'><strong>State: "
            f"{html.escape(_state_text(c['state']))}</strong></p>"]
    h = [_h2("Setup"), "<ul>"]
    h += [f"<li><strong>{html.escape(k)}:</strong> {_inline(str(v))}</li>" for k, v in c["setup"]]
    h += ["</ul><h3>Budget per regularizer type</h3>", _table(c["budget"], na_rep="–")]
    h += [_h2("Table 1 analogue")]
    for name, g in c["table1_blocks"]:
        h += [f"<h3>{html.escape(name)}: {html.escape(G.table1_heading(g, c['epoch']))}</h3>",
              _table(G.table1_frame(g, gaps=c["gaps"], test=TESTS[c["test"]][0])),
              "<p class='caption'>Cross-entropy in nats; mean [95% bootstrap CI] over seeds. “As trained” = "
              "training-batch loss with dropout/augmentation active (data term only); “clean” = eval mode on a "
              "fixed training sample.</p>"]
    h += [_h2("Gap summary (final epoch)"), "<p class='caption'>Mean [95% bootstrap CI] over seeds; Δ = "
          "technique − none; full numbers in <code>gaps.csv</code>.</p>"]
    for name, key in c["key_blocks"]:
        h += [f"<h3>{html.escape(name)}</h3>", _table(key)]
    h += [_h2("Conclusion"), "<ul>"] + [f"<li>{_inline(x)}</li>" for x in c["conclusions"]] + ["</ul>"]
    h += [_h2("Figures")]
    for name, paths in c["figures"].items():
        png = next((p for p in paths if p.suffix == ".png"), None)
        if png is None or not png.exists():
            continue
        b64 = base64.b64encode(png.read_bytes()).decode("ascii")
        base = name.split("_")[0]
        h += [f"<h3 id='figure-{html.escape(name)}'>{html.escape(name)}</h3><p class='caption'>{html.escape(FIGURE_TEXT.get(base, ''))}</p>",
              f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"]
    if c["notes"]:
        h += [_h2("Notes"), "<ul>"] + [f"<li class='note'>{_inline(n)}</li>" for n in c["notes"]] + ["</ul>"]
    return "\n".join([*head, _contents(h), *h, "</body></html>"])


def _state_text(state) -> str:
    if state.state == "finished":
        return "finished (every trial ended)"
    return f"{state.state.upper()}: {state.detail}"


def report(results: str | Path, out: str | Path | None = None, **kw) -> tuple[Path, Path, Summary]:
    """Summarise (writing all summary files and figures), then write report.html and report.md."""
    s = summarize(results, out, **kw)
    c = build(s)
    md, ht = s.out_dir / "report.md", s.out_dir / "report.html"
    md.write_text(to_markdown(c))
    ht.write_text(to_html(c))
    return ht, md, s


def main(argv: list[str] | None = None) -> int:
    """Exit codes (study.cli): 0 written, 1 failed, 2 bad option or unusable results, 130 interrupted."""
    return cli.run(lambda: _main(argv), bad_input=BAD_INPUT)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap)
    a = ap.parse_args(argv)
    check_options(a)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ht, md, s = report(a.results, a.out, test=a.test, n_boot=a.n_boot, seed=a.seed, epoch=a.epoch)
    print_state(s.state, a.results)
    for line in conclusions(s.gaps, test=s.settings["test"]):
        print(f"- {line}")
    print(f"\nwrote {ht}\nwrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
