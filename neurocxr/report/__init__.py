"""The report people read (HTML + JSON). Step one of splitting the former `neurocxr/report.py`:
the module moved here unchanged as `neurocxr.report.html`; the names it exported stay importable
from `neurocxr.report`."""

from neurocxr.report.html import (  # noqa: F401  (re-exports)
    DEFAULT_ASSUMPTIONS,
    Report,
    SummaryRow,
    SweepTable,
    _sample_sentence,
    format_accuracy,
    format_energy,
    format_seconds,
    is_headline,
    pareto_front,
    read_sweep,
    render_html,
    report_to_json,
    summary_from,
    verdict,
    verdict_caveats,
    write_report,
)
from neurocxr.report.html import __all__  # noqa: F401
