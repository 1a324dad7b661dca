"""Writing a report: ``report.html`` and ``report.json`` into one folder, atomically."""

from __future__ import annotations

import os
from pathlib import Path

from neurocxr.fileio import dumps_json, write_text
from neurocxr.report.html import render_html
from neurocxr.report.model import Report, summary_from
from neurocxr.report.serialize import report_to_json

__all__ = ["write_report"]


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (created if needed), atomically.

    Returns ``(html_path, json_path)``. The summary is built from the estimates and measurements
    when ``report.summary`` is empty.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not report.summary and (report.estimates or report.measurements):
        report.summary = summary_from(report.estimates, report.measurements, auc=report.auc)
    html_path, json_path = out / "report.html", out / "report.json"
    payload = dumps_json(report_to_json(report))
    page = render_html(report)
    write_text(json_path, payload + "\n")
    write_text(html_path, page)
    return html_path, json_path
