"""The report people read: one self-contained HTML page and a JSON file with every number.

Input is a `Report` (plain dataclass) assembled by the energy-report stage (`neurocxr.report.stage`):
energy estimates and measurements, per-layer counts on both counting bases, clinical metrics at
validation-chosen operating points, export and parity results, provenance, and optionally a
sweep table. One module per job, each importing only those above it:

- `model`: `Report`, `SummaryRow`, `SweepTable`, the summary rows built from estimates and
  measurements (`formatting`: how numbers are written, below everything);
- `verdict`: the one-sentence verdict, the sweep sentence and the caveats;
- `sweep_file`: reading a sweep's results table (depends on `model` only);
- `serialize`: ``report.json`` (every energy number as ``{"value", "unit", "kind", "source"}``);
- `plots`: the five plots as PNG data URIs;
- `html`: ``report.html`` from the jinja2 templates in ``templates/``;
- `write`: both files into one folder, atomically.
"""

from neurocxr.report.formatting import format_accuracy, format_energy, format_seconds
from neurocxr.report.html import render_html
from neurocxr.report.model import (
    DEFAULT_ASSUMPTIONS,
    Report,
    SummaryRow,
    SweepTable,
    is_headline,  # noqa: F401  (the CLI's table reads it from here)
    summary_from,
)
from neurocxr.report.plots import pareto_front  # noqa: F401  (importable from here, as before)
from neurocxr.report.serialize import report_to_json
from neurocxr.report.sweep_file import read_sweep
from neurocxr.report.verdict import verdict, verdict_caveats
from neurocxr.report.write import write_report

# The names `neurocxr/report.py` exported; `is_headline` (the CLI's table) and `pareto_front` are
# importable from here as they were, without joining the star-import set.
__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "SummaryRow",
    "Report",
    "SweepTable",
    "summary_from",
    "verdict",
    "verdict_caveats",
    "read_sweep",
    "write_report",
    "report_to_json",
    "render_html",
    "format_energy",
    "format_seconds",
    "format_accuracy",
]
