"""``repro-report``: MLflow runs -> a table and plots beside the paper's and the literature's numbers.

    repro-report --profile quick                 # results/quick/: table.md, table.csv, claims.csv, *.png
    repro-report --profile paper --tolerance 0.5 --no-log

Reads only MLflow (the runs of one experiment whose ``profile`` tag matches, or that a later
sweep of the profile reused: tag ``repro.profile.<name>``) and ``conf/references.csv``.
table.md opens with the table a paper would print (methods x target sparsities, references
starred), then the long per-group table, the claims and "PMP against the others, paired
by seed" (relative.csv). Runs
are grouped by model, dataset, data source, method, target sparsity (param ``sparsity``; 0
for dense), epochs and width, and by their group tag (``repro.group``: runs that differ in
anything but the seed are never merged); seeds are aggregated (mean, sample std, n,
Student-t interval). Failed or unfinished runs are left out of the numbers and listed under
the table. The same files are logged to MLflow as a run tagged ``kind=report`` (which later
reports skip). The verdict rules are stated in :mod:`repro.report.decide` and in table.md.

One job per module, in the order the data flows:

- :mod:`~repro.report.reading`: MLflow -> one tidy row per run; complete, left-out, duplicate
- :mod:`~repro.report.stats`: t-intervals, paired/Welch differences, the interval verdict
- :mod:`~repro.report.decide`: the rule per kind of claim (>= 3 seeds, TOST, one-sided), reasons, seeds needed
- :mod:`~repro.report.aggregate`: groups of runs -> statistics, notes, delta and cost vs dense, file sizes
- :mod:`~repro.report.claims`: references beside the groups, with verdicts and like-for-like notes
- :mod:`~repro.report.relative`: claim_relative, PMP against every other method of ours, paired by seed
- :mod:`~repro.report.pivot`: the paper-style table (methods x target sparsities)
- :mod:`~repro.report.plots`: the plot registry and the plots
- :mod:`~repro.report.plot_deploy`: latency, throughput and size vs sparsity, dense beside CSR (timed runs only)
- :mod:`~repro.report.render`: table.md, table.csv, claims.csv, provenance
- :mod:`~repro.report.logging_run`: the report as an MLflow run
- :mod:`~repro.report.cli`: the command line, ``make_report`` and ``main``

This package re-exports the names callers imported from the single module it replaces.
"""

from __future__ import annotations

from repro.report.aggregate import NUM_CLASSES, add_dense_deltas, cost_columns, size_columns, summarize
from repro.report.claims import (
    BEST_METRICS,
    DEFAULT_REFERENCES,
    REF_COLUMNS,
    SPARSITY_MATCH,
    compare,
    like_for_like,
    load_references,
    references_for,
)
from repro.report.cli import Report, build_parser, main, make_report
from repro.report.decide import (
    MIN_SEEDS,
    NO_NUMBER,
    Decision,
    decide_equivalence,
    decide_interval,
    decide_relative,
    one_sided_bounds,
    seeds_needed,
)
from repro.report.logging_run import log_report_run
from repro.report.pivot import block_table, cell_text, ref_text
from repro.report.plots import (
    PLOT_PREFIXES,
    PLOTS,
    pick_curve_run,
    plot_accuracy,
    plot_curve,
    plot_layer_density,
    plot_prefixes,
    register_plot,
)
from repro.report.reading import BASE_KEYS, GROUP_BY, GROUP_COLUMN, GROUP_KEYS, fetch_runs, split_runs, tidy
from repro.report.relative import RELATIVE_COLUMNS, RELATIVE_KIND, relative_claims
from repro.report.render import (
    claims_markdown,
    groups_markdown,
    left_out_markdown,
    markdown_table,
    paper_table_markdown,
    provenance,
    relative_markdown,
    write_csvs,
    write_markdown,
)
from repro.report.stats import (
    INCONCLUSIVE,
    NAN,
    NO_RUNS,
    NOT_REPRODUCED,
    REPRODUCED,
    Stats,
    combine,
    difference,
    t_interval,
    t_quantile,
    verdict,
    welch_interval,
)

__all__ = [
    "BASE_KEYS", "BEST_METRICS", "DEFAULT_REFERENCES", "GROUP_BY", "GROUP_COLUMN", "GROUP_KEYS", "INCONCLUSIVE",
    "MIN_SEEDS", "NAN", "NOT_REPRODUCED", "NO_NUMBER", "NO_RUNS", "NUM_CLASSES", "PLOTS", "PLOT_PREFIXES",
    "REF_COLUMNS", "RELATIVE_COLUMNS", "RELATIVE_KIND", "REPRODUCED", "SPARSITY_MATCH", "Decision",
    "Report", "Stats", "add_dense_deltas", "block_table", "build_parser", "cell_text", "claims_markdown", "combine",
    "compare", "cost_columns", "decide_equivalence", "decide_interval", "decide_relative", "difference", "fetch_runs",
    "groups_markdown", "left_out_markdown", "like_for_like", "load_references", "log_report_run", "main",
    "make_report", "markdown_table", "one_sided_bounds", "paper_table_markdown", "pick_curve_run", "plot_accuracy",
    "plot_curve", "plot_layer_density", "plot_prefixes", "provenance", "ref_text", "references_for", "register_plot",
    "relative_claims", "relative_markdown", "seeds_needed", "size_columns", "split_runs", "summarize", "t_interval", "t_quantile",
    "tidy", "verdict", "welch_interval", "write_csvs", "write_markdown",
]
