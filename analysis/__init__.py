"""Study results (the Parquet contract of `raylab.results`) to tables, figures and reports.

    from analysis import load_study, summarize, rank, to_markdown, plots
    study = load_study("results/lab2_lr_sweep")
    parts = load_study("results/assignment").split()   # a combined sweep: one Study per study
    table = summarize(study); print(to_markdown(table)); print(rank(table).note)
    plots.save(plots.sweep_scatter(study.trials, "lr"), "lr_sweep")

pandas, pyarrow and matplotlib only: importing this package never imports torch or Ray.
`analysis.report` holds `write_report` and the `raylab report` command.
"""
from . import plots
from .load import (Study, StudyError, load_studies, load_study, shared_variants, split_studies,
                   swept_fields)
from .summary import Ranking, difference, fmt_pm, rank, summarize, to_markdown

__all__ = ["Study", "StudyError", "load_study", "load_studies", "split_studies", "shared_variants",
           "swept_fields", "summarize",
           "rank", "Ranking", "difference", "fmt_pm", "to_markdown", "plots"]
