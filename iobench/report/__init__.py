"""Reports of one or more runs: a self-contained HTML file, a Markdown summary, figure files.

The drawing modules (matplotlib) are imported by ``build_report`` only: ``iobench run`` prints
its tables with ``iobench.report.tables`` and must not import matplotlib (which writes its
caches under $HOME and takes a second to load).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from iobench.errors import IobenchError

if TYPE_CHECKING:
    from iobench.results import ResultSet

FORMATS = ("html", "md", "png", "svg")
DEFAULT_FORMATS = ("html", "md", "png")
#: How report.md shows figures: data URIs in the file, links to the PNG/SVG files, or not at all.
MD_IMAGES = ("inline", "links", "none")


def parse_formats(raw: str) -> tuple[str, ...]:
    """``html,md`` -> ("html", "md"); IobenchError naming the bad value otherwise."""
    chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not chosen:
        raise IobenchError(f"--format: choose one or more of {', '.join(FORMATS)}")
    for part in chosen:
        if part not in FORMATS:
            raise IobenchError(f"--format: {part!r} is not one of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


def build_report(
    runs: list[ResultSet],
    out_dir: Path,
    formats: Iterable[str] = DEFAULT_FORMATS,
    md_images: str = "links",
    fleet: Mapping[str, ResultSet] | None = None,
) -> list[Path]:
    """Write the report of ``runs`` into ``out_dir`` in the given formats; returns the files.

    ``md_images``: "links" points report.md at the PNG (or SVG) files written beside it (none
    when neither format is written), "inline" embeds each figure as a PNG data URI so the one
    file carries them, "none" leaves figures out of report.md. ``fleet`` (host name -> that
    host's run, the runs of a fleet run) adds the "host vs fleet median" table.
    """
    from iobench.report.figures import save_figure
    from iobench.report.html import render_html
    from iobench.report.markdown import render_markdown
    from iobench.report.model import build_model

    if md_images not in MD_IMAGES:
        raise IobenchError(f"--md-images: {md_images!r} is not one of {', '.join(MD_IMAGES)}")
    formats = tuple(formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    inline = md_images == "inline" and "md" in formats
    model = build_model(runs, draw=inline or any(f in formats for f in ("html", "png", "svg")))
    if fleet is not None:
        from iobench.report.fleet import fleet_section

        model.fleet = fleet_section(fleet)
    written: list[Path] = []
    images: dict[str, str] = {}
    for section in model.sections:
        for figure in section.figures:
            for fmt in ("png", "svg"):
                if fmt in formats:
                    path = save_figure(figure, out_dir, fmt)
                    written.append(path)
                    if md_images == "links":
                        images.setdefault(figure.stem, path.name)
            if inline:
                images[figure.stem] = "data:image/png;base64," + base64.b64encode(figure.png()).decode(
                    "ascii"
                )
    if "html" in formats:
        path = out_dir / "report.html"
        path.write_text(render_html(model), encoding="utf-8")
        written.append(path)
    if "md" in formats:
        path = out_dir / "report.md"
        path.write_text(render_markdown(model, images), encoding="utf-8")
        written.append(path)
    for section in model.sections:
        for figure in section.figures:
            figure.close()
    return written
