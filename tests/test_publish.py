"""Published results (``python -m analysis.publish`` and ``docs/results/``): what a result holds,
its size, and that the committed numbers are those the analysis writes -- in the result's
README, its report and the project README's Results section."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import tablegen
from analysis import publish as P

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PUBLISHED = ("pos-treebank-rnn", "seed-table1-cpu")


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| technique")]


def test_publish_writes_the_report_figures_and_a_readme(tmp_path, capsys):
    d = tablegen.make_experiment(tmp_path / "exp")
    dest = tmp_path / "docs" / "exp"
    (dest / "figures").mkdir(parents=True)
    (dest / "figures" / "stale.png").write_bytes(b"x")  # (a previous publish's: replaced)
    argv = [str(d), str(dest), "--n-boot", "200", "--label", "Reduced scale: a test"]
    assert P.main(argv) == 0
    readme, report = (dest / "README.md").read_text(), (dest / "report.md").read_text()
    assert "**Reduced scale: a test**" in readme
    assert "python -m study.run --space fixture --name exp" in readme  # (the experiment's command)
    assert f"python -m analysis.publish {d} {dest} --n-boot 200 --label 'Reduced scale: a test'" in readme
    for field in ("**Machine:** 16 CPUs", "**Wall time:** 1:02:03", "**Date:** 2025-01-01", "paired t-test"):
        assert field in readme, field
    # the headline is the report's gap summary, row for row
    rows = table_rows(readme)
    assert len(rows) == 5 and all(r in report for r in rows)
    linked = re.findall(r"\(figures/([^)]+)\)", report)
    assert linked and all(n.endswith(".png") for n in linked)
    assert sorted(p.name for p in (dest / "figures").iterdir()) == sorted(set(linked))
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= P.MAX_BYTES
    assert not list(dest.glob("*.csv")) and not list(dest.glob("*.html"))


def test_publish_refuses_more_than_the_size_limit(tmp_path, monkeypatch, capsys):
    d = tablegen.make_experiment(tmp_path / "exp")
    monkeypatch.setattr(P, "MAX_BYTES", 10_000)
    assert P.main([str(d), str(tmp_path / "out"), "--n-boot", "200"]) == 2
    assert "would take" in capsys.readouterr().err and not (tmp_path / "out" / "README.md").exists()


@pytest.mark.parametrize("name", PUBLISHED)
def test_committed_results_hold_what_the_analysis_wrote(name):
    d = RESULTS / name
    readme, report = (d / "README.md").read_text(), (d / "report.md").read_text()
    assert re.search(r"python -m study\.run --space \S+ .*--name " + re.escape(name), readme)
    assert f"python -m analysis.publish results/{name} docs/results/{name}" in readme
    for field in ("**Machine:**", "**Wall time:**", "**Date:**"):
        assert field in readme
    rows = table_rows(readme)
    assert rows and all(r in report for r in rows)
    for fig in re.findall(r"\(figures/([^)]+)\)", report):
        assert (d / "figures" / fig).is_file(), fig
    assert sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) <= P.MAX_BYTES


def test_the_project_readme_quotes_the_published_headlines():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    for name in PUBLISHED:
        assert f"(docs/results/{name}/)" in section or f"(docs/results/{name})" in section
    quoted = table_rows(section)
    published = {r for name in PUBLISHED for r in table_rows((RESULTS / name / "README.md").read_text())}
    assert quoted and set(quoted) <= published
