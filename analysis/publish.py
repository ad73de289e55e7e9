"""``python -m analysis.publish results/<name> docs/results/<name>``: a published result.

Runs the report (``analysis.report``, the same options) and writes into the destination only
what is published: ``report.md`` (its figures linked as PNG), ``figures/*.png`` and a
``README.md`` that says what was run and where: the exact commands (the experiment's own, from
experiment.json, and this one), the machine, the wall time, the date, the versions, and the
headline table (the report's gap summary, as the analysis wrote it). At most
:data:`MAX_BYTES` in all: a result is text and a few figures, never tables or checkpoints.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from study import cli, preflight

from . import gaps as G
from .report import _hms, _key_blocks, build, to_markdown
from .stats import TESTS
from .summarize import BAD_INPUT, add_options, check_options, summarize

MAX_BYTES = 2 * 2**20


class TooLarge(cli.UsageError):
    """The published files would exceed MAX_BYTES."""


def cpu_model() -> str:
    """This machine's CPU, as /proc/cpuinfo names it (else the platform's processor)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def headline(s) -> str:
    """The report's gap summary tables (markdown), one block per task / dataset / model."""
    return "\n\n".join(G.markdown_table(table) for _, table in _key_blocks(s.gaps))


def readme(s, argv: list[str], label: str | None) -> str:
    e = s.experiment
    hw = e.get("hardware") or {}
    cmd = e.get("command")
    run = shlex.join(map(str, cmd)) if isinstance(cmd, list) else str(cmd or "?")
    this = shlex.join(["python", "-m", "analysis.publish", *argv])
    gpus = ", ".join(map(str, hw.get("gpus") or [])) or "none"
    lines = [f"# {e.get('name') or s.results_dir.name}: {e.get('description', '').strip() or e.get('space', '')}", ""]
    if label:
        lines += [f"**{label}**", ""]
    lines += [
        f"- **Space:** `{e.get('space', '?')}`",
        "- **Commands** (from the repository root; the second writes this directory):",
        "", "  ```", f"  {run}", f"  {this}", "  ```", "",
        f"- **Machine:** {hw.get('cpu_count', '?')} CPUs ({cpu_model()}), GPUs: {gpus}; "
        f"{hw.get('platform', platform.platform())}",
        f"- **Wall time:** {_hms(e.get('wall_time_s'))} (the sweep, {e.get('start_time', '?')} to "
        f"{e.get('end_time', '?')})",
        f"- **Date:** {str(e.get('end_time', '?'))[:10]}",
        f"- **Versions:** {', '.join(f'{k} {v}' for k, v in (e.get('versions') or {}).items())}",
        f"- **Statistics:** {s.settings['n_boot']} bootstrap resamples (seed {s.settings['seed']}); "
        f"test vs none: {TESTS[s.settings['test']][0]}",
        "",
        "## Headline (final epoch; mean [95% bootstrap CI] over seeds, Δ = technique − none)",
        "",
        headline(s),
        "",
        "The full report, its figures and its notes: [report.md](report.md). Every number here is "
        "written by the commands above; rerun them to reproduce this directory.",
        "",
    ]
    return "\n".join(lines)


def publish(results: str | Path, dest: str | Path, argv: list[str], *, label: str | None = None,
            **options) -> Path:
    """Write the published files into ``dest`` (replacing what a previous publish put there)."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        s = summarize(results, tmp, **options)
        md = to_markdown(build(s), svg=False)
        pngs = [p for paths in s.figures.values() for p in paths if p.suffix == ".png"]
        text = readme(s, argv, label)
        size = len(md.encode()) + len(text.encode()) + sum(p.stat().st_size for p in pngs)
        if size > MAX_BYTES:
            raise TooLarge(f"{dest}: the published files would take {size / 2**20:.2f} MiB (at most "
                           f"{MAX_BYTES / 2**20:.0f} MiB): leave some figures out of the experiment")
        if (dest / "figures").is_dir():
            shutil.rmtree(dest / "figures")
        (dest / "figures").mkdir(parents=True, exist_ok=True)
        for p in pngs:
            shutil.copyfile(p, dest / "figures" / p.name)
    (dest / "report.md").write_text(md)
    (dest / "README.md").write_text(text)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Exit codes (study.cli): 0 written, 1 failed, 2 bad option or unusable results, 130 interrupted."""
    return cli.run(lambda: _main(argv), bad_input=BAD_INPUT)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m analysis.publish", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap)
    ap.add_argument("dest", help="the published result's directory, e.g. docs/results/<name>")
    ap.add_argument("--label", help="a line shown first in the README (e.g. the scale it was run at)")
    a = ap.parse_args(argv)
    if a.out:
        raise cli.UsageError("--out: publish writes into DEST (the report's other files are not published)")
    check_options(a)
    preflight.output_dir(os.fspath(a.dest), "DEST")
    dest = publish(a.results, a.dest, argv, label=a.label, test=a.test, n_boot=a.n_boot, seed=a.seed,
                   epoch=a.epoch)
    print(f"wrote {dest / 'README.md'}, {dest / 'report.md'} and {dest / 'figures'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
