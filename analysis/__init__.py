"""Study results (the Parquet contract of `raylab.results`) to tables, figures and reports.

    from analysis import load_study, summarize, rank, to_markdown, plots
    study = load_study("results/lab2_lr_sweep")
    parts = load_study("results/assignment").split()   # a combined sweep: one StudyResults per study
    study.metrics, study.trials, study.weights         # tidy DataFrames (analysis/load.py)
    table = summarize(study); print(to_markdown(table)); print(rank(table).note)
    plots.save(plots.sweep_scatter(study.trials, "lr"), "lr_sweep")

pandas, pyarrow and matplotlib only: importing this package never imports torch or Ray.
`analysis.report` holds `write_report` and the `raylab report` command.
"""
from . import plots
from .load import (StudyError, StudyResults, load_studies, load_study, shared_variants, split_studies,
                   swept_fields)
from .variant_stats import Ranking, difference, fmt_pm, rank, summarize, to_markdown

__all__ = ["StudyResults", "StudyError", "load_study", "load_studies", "split_studies", "shared_variants",
           "swept_fields", "summarize",
           "rank", "Ranking", "difference", "fmt_pm", "to_markdown", "plots"]
