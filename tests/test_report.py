"""Reports: HTML and Markdown structure, figures, explanations from the numbers, --format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from iobench.cli import cli
from iobench.experiments import all_experiments, get_experiment
from iobench.experiments.base import Experiment
from iobench.experiments.rw_buffer import RwBuffer
from iobench.report import build_report, parse_formats
from iobench.report.explain import plateau
from iobench.report.model import build_model
from iobench.report.tables import summarize
from tests.report_data import FLAT, STEEP, make_run, write_run


def _summary(run):
    return summarize(run.frame)


def test_one_run_html_is_self_contained_with_a_section_per_experiment(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP, lost=300)
    written = build_report([run], tmp_path, ("html", "md", "png"))
    html = (tmp_path / "report.html").read_text()
    assert re.findall(r'<section class="experiment" id="(exp-[^"]+)"', html) == [
        "exp-rw-buffer",
        "exp-file-concurrency",
    ]
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', html)
    )
    assert html.count("<img") >= 3  # throughput, stacked CPU, records lost
    assert "What this shows" in html and 'href="#exp-rw-buffer"' in html
    assert (tmp_path / "rw-buffer-throughput.png") in written
    markdown = (tmp_path / "report.md").read_text()
    assert "## rw-buffer" in markdown and "## file-concurrency" in markdown
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (tmp_path / link).is_file()


def test_markdown_only_has_no_image_links(tmp_path: Path) -> None:
    written = build_report([make_run("20260101-000000-aaaa", speed=STEEP)], tmp_path, ("md",))
    assert written == [tmp_path / "report.md"]
    assert "![" not in (tmp_path / "report.md").read_text()


def test_svg_on_request(tmp_path: Path) -> None:
    build_report([make_run("20260101-000000-aaaa", speed=STEEP)], tmp_path, ("svg",))
    assert (tmp_path / "rw-buffer-throughput.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "report.html").exists()


def test_explanations_follow_the_numbers() -> None:
    steep = RwBuffer.explain(_summary(make_run("a", speed=STEEP)))
    flat = RwBuffer.explain(_summary(make_run("a", speed=FLAT)))
    assert steep != flat
    assert any("still paid >= 5% up to 64KiB" in s for s in steep)
    assert any("Unlike seed 002" in s for s in steep)
    assert any("beyond bs=4KiB the next size gains < 5%" in s for s in flat)
    assert any("As seed 002 (TLPI) says" in s for s in flat)
    assert any("kernel takes 75% of the CPU" in s for s in steep)


def test_racing_writer_losses_are_counted() -> None:
    concurrency = get_experiment("file-concurrency")
    lost = " ".join(concurrency.explain(_summary(make_run("a", lost=300))))
    none = " ".join(concurrency.explain(_summary(make_run("a", lost=0))))
    assert "lost 300 of 4,000 records (8%)" in lost and "seed 004" in lost
    assert "lost 0 of 4,000" in none and "seed 004" not in none


def test_explain_returns_nothing_when_cases_are_absent() -> None:
    import pandas as pd

    for experiment in all_experiments():
        names = [p.name for p in experiment.params] + [c.metric for c in experiment.columns]
        empty = pd.DataFrame(columns=list(dict.fromkeys([*names, "bytes", "ops", "bytes_per_s"])))
        assert experiment.explain(empty) == [], experiment.name


def test_generic_hooks_work_without_overrides() -> None:
    class Plain(Experiment):
        # A new experiment that declares nothing for reports (the socket ones, at first).
        name = "rw-buffer"
        params = RwBuffer.params

    specs = Plain.report_figures()
    assert [s.kind for s in specs] == ["metric", "percentiles"]
    sentences = Plain.explain(_summary(make_run("a", speed=STEEP)))
    assert sentences and "Elapsed ranges from" in sentences[0]


def test_plateau() -> None:
    import pandas as pd

    rows = pd.DataFrame({"bs": [1, 2, 4, 8], "bytes_per_s": [1.0, 2.0, 2.05, 4.0]})
    assert plateau(rows, "bs") == 2
    assert plateau(rows.iloc[:2], "bs") is None


def test_several_runs_one_series_each(tmp_path: Path) -> None:
    before = make_run("20260101-000000-aaaa", speed=STEEP, hostname="alpha")
    after = make_run("20260102-000000-bbbb", speed=FLAT, hostname="beta")
    model = build_model([before, after])
    section = model.sections[0]
    assert [label for label, _ in section.explanations] == ["alpha aaaa", "beta bbbb"]
    assert len(section.tables) == 2
    axes = section.figures[0].figure.axes[0]
    assert sorted(axes.get_legend_handles_labels()[1]) == ["alpha aaaa", "beta bbbb"]
    build_report([before, after], tmp_path, ("html",))
    assert (tmp_path / "report.html").read_text().count('class="run"') == 2


def test_unsupported_cases_are_listed_with_their_reason(tmp_path: Path) -> None:
    run = make_run("20260101-000000-aaaa", speed=STEEP, unsupported=True, fs_type="tmpfs",
                   warnings=["target is tmpfs: cold cache impossible"])  # fmt: skip
    build_report([run], tmp_path, ("html", "md"))
    html = (tmp_path / "report.html").read_text()
    assert 'id="exp-direct-io"' in html and "O_DIRECT refused a misaligned buffer" in html
    assert "target is tmpfs" in html and "on tmpfs" in html
    assert "1 case(s) did not run" in (tmp_path / "report.md").read_text()


def test_empty_run(tmp_path: Path) -> None:
    build_report([make_run("20260101-000000-aaaa")], tmp_path, ("html", "md"))
    assert "No repetitions finished" in (tmp_path / "report.html").read_text()
    assert "No repetitions finished" in (tmp_path / "report.md").read_text()


def test_parse_formats() -> None:
    assert parse_formats("HTML, md,md") == ("html", "md")


@pytest.mark.parametrize(
    ("value", "message"),
    [("pdf", "--format: 'pdf' is not one of html, md, png, svg"), (",", "--format: choose one or more")],
)
def test_cli_bad_format_is_one_line_exit_2(tmp_path: Path, value: str, message: str) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    result = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), "--format", value])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_formats_and_default_latest(tmp_path: Path) -> None:
    write_run(tmp_path, make_run("20260101-000000-aaaa", speed=STEEP))
    write_run(tmp_path, make_run("20260102-000000-bbbb", speed=FLAT))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["report", "--results", str(tmp_path), "--format", "md,png", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "20260102-000000-bbbb" in (out / "report.md").read_text()
    assert (out / "rw-buffer-throughput.png").is_file() and not (out / "report.html").exists()
