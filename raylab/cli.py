"""`raylab` command line: train | run | resume | status | list | models | report | doctor.

The top layer: it imports the core and the sweep layer, never the other way
round. Kept import-light: torch and Ray are imported inside the commands that
train, so `--help`, `list`, `status`, `report` and every argument error answer
without loading them. User mistakes (raylab.errors.UserError, a full or
read-only disk) end as one line on stderr and exit status 2, never a
traceback; `--debug` shows the traceback anyway. Anything else is a bug and
shows one.

A job file run as a script ends with `raise SystemExit(run_job(STUDY))`, so
`python jobs/FILE.py --epochs 5` and `raylab run jobs/FILE.py --epochs 5` do
the same thing.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from raylab.declare.config import SCHEDULERS, SEARCHES, SHORTCUTS, SOURCES, SweepOptions, TrialConfig, config_fields
from raylab.errors import DISK_ERRNOS, ConfigError, UsageError, UserError
from raylab.declare.study import Study, load_job, select


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block; one line names the problem and the fix.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()

    def go() -> int:
        args = parser.parse_args([a for a in argv if a != "--debug"])
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)

    return main_guard(go, debug="--debug" in argv)


def run_job(study: Study, argv: list[str] | None = None) -> int:
    """Entry point of a job file run as a script; the same flags as `raylab run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog=Path(sys.argv[0]).name, description=study.description or study.name)
    add_run_flags(parser)

    def go() -> int:
        args = parser.parse_args([a for a in argv if a != "--debug"])
        return _run(apply_run_flags(study, args), args)

    return main_guard(go, debug="--debug" in argv)


def main_guard(fn, debug: bool = False) -> int:
    """Run a command: a user error becomes one line and exit 2, a bug keeps its traceback."""
    if debug:  # and Ray's and Tune's log lines about it stay on stderr (raylab/sweep/storage_noise.py)
        logging.getLogger("raylab").setLevel(logging.DEBUG)
    try:
        return fn()
    except KeyboardInterrupt:
        print("raylab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raylab status ... | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")
        return 0
    except Exception as exc:
        user = isinstance(exc, UserError) or (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS)
        if debug or not user:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(text if text.startswith("raylab") else f"raylab: error: {text}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raylab", description="CIFAR-10 CNN studies on Ray Tune. --debug shows tracebacks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("train", help="train one model in this process, write Parquet results")
    add_config_flags(p)
    p.add_argument("--out", required=True, help="results folder (metrics/trials/weights.parquet)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="run a study (job file) as a Ray Tune sweep")
    p.add_argument("job", help="job file, e.g. jobs/lab2_lr_sweep.py")
    add_run_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="finish an interrupted sweep from its checkpoints")
    p.add_argument("study_dir", help="e.g. results/lab2_lr_sweep")
    p.add_argument("--address", help="Ray cluster to use (default: start a local one)")
    p.add_argument("--num-cpus", type=int, help="CPUs local Ray may use")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="progress of a study from its Parquet files")
    p.add_argument("study_dir")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("compact", help="merge a study's Parquet parts into its three files")
    p.add_argument("study_dir", help="e.g. results/lab2_lr_sweep or s3://bucket/results/lab2_lr_sweep")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("list", help="the studies in a jobs folder, with variant and trial counts")
    p.add_argument("folder", nargs="?", default="jobs")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("models", help="parameter shapes, counts and MACs of the registered models")
    p.add_argument("name", nargs="?", help="one model (default: all)")
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--shortcut", default=TrialConfig.shortcut, choices=SHORTCUTS)
    p.add_argument("--job", help="a job file: also list the models it declares with @raylab.model")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("doctor", help="check every node (versions, code, GPUs, storage) and that job files fit")
    p.add_argument("jobs", nargs="*", metavar="JOB", help="job files whose trials to check against the nodes")
    add_run_flags(p, skip_doctor=False)  # `raylab doctor JOB FLAGS` checks what `raylab run JOB FLAGS` runs
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("report", help="write report.md (+ figures) for study folders")
    p.add_argument("studies", nargs="+", metavar="STUDY_DIR")
    p.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    p.add_argument("--format", default="md", choices=("md", "html"))
    p.set_defaults(func=cmd_report)
    return parser


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrialConfig field (`--weight-decay`, `--batchnorm/--no-batchnorm`); test hooks have none."""
    shown = set(config_fields(hidden=False))
    for f in dataclasses.fields(TrialConfig):
        if f.name not in shown:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=kind.split("[")[0].upper(),
                           help=f"default: {_show(f.default)}")


def _show(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_run_flags(p: argparse.ArgumentParser, skip_doctor: bool = True) -> None:
    """The flags of `raylab run` and of a job file run as a script; defaults are SweepOptions'."""
    d = SweepOptions
    g = p.add_argument_group("run options", "any config field can be forced with --set FIELD=VALUE")
    g.add_argument("--epochs", type=int, help="epochs per trial (default: the study's)")
    g.add_argument("--seeds", type=int, help="seeds per variant (default: the study's)")
    g.add_argument("--data", help=SOURCES.replace(" or ", ", "))
    g.add_argument("--data-root", help=f"where cifar10 and the decoded caches live (default: {TrialConfig.data_root})")
    g.add_argument("--storage", default=d.storage, help=f"results root: a folder or s3://... (default: {d.storage})")
    g.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: start a local Ray)")
    g.add_argument("--gpus-per-trial", type=float, help="GPU share per trial, e.g. 0.25 (default: per model)")
    g.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: 1, 2 with a whole GPU)")
    g.add_argument("--workers", type=int, default=d.workers, help=f"DDP workers per trial (default {d.workers}: no DDP)")
    g.add_argument("--max-concurrent", type=int, default=d.max_concurrent, help="at most this many trials at once")
    g.add_argument("--scheduler", choices=SCHEDULERS, default=None, help="asha: stop weak trials early; pbt: "
                   f"clone strong trials' weights, perturb lr/momentum/wd (default: the study's, else {d.scheduler})")
    g.add_argument("--search", choices=SEARCHES, default=None, help="how a study's distributions are sampled "
                   f"(default: the study's, else {d.search}; optuna: TPE)")
    g.add_argument("--num-samples", type=int, help="draws per variant-seed pair of a searched study (default: the study's)")
    g.add_argument("--log", choices=("mlflow",), default=d.log, help="also log to MLflow (TensorBoard files: always)")
    g.add_argument("--mlflow-uri", help="MLflow tracking URI (default: an SQLite store in the study folder)")
    g.add_argument("--max-failures", type=int, default=d.max_failures,
                   help=f"restarts of a crashed trial (default {d.max_failures})")
    g.add_argument("--num-cpus", type=int, help="CPUs local Ray may use (default: all)")
    g.add_argument("--wait-for-nodes", type=float, default=d.wait_for_nodes, metavar="SECONDS",
                   help=f"on a cluster, wait this long for the autoscaler to add a node a trial fits (default {d.wait_for_nodes:g})")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="force a config field on every trial")
    g.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="run only variants whose STUDY/VARIANT name matches, e.g. 'lab2_*' or '*/lr=0.1'")
    g.add_argument("--skip", action="append", default=[], metavar="GLOB", help="leave out matching variants")
    g.add_argument("--quiet", action="store_true", help="no Tune progress table")
    if skip_doctor:
        g.add_argument("--skip-doctor", action="store_true", help="on a cluster, start without first checking "
                       "that every node runs this raylab and reaches --storage (raylab doctor)")


def apply_run_flags(study: Study, args: argparse.Namespace) -> Study:
    options = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set takes FIELD=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = value
    for name in ("epochs", "data", "data_root"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    study = select(study, args.only, args.skip).with_options(seeds=args.seeds, **options)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1, got {args.num_samples}")
        study = dataclasses.replace(study, num_samples=args.num_samples)
    return study


def sweep_options(args: argparse.Namespace, study: Study | None = None) -> SweepOptions:
    """A job file may declare its search and scheduler; the command line beats it."""
    return SweepOptions(storage=args.storage, address=args.address, gpus_per_trial=args.gpus_per_trial,
                        cpus_per_trial=args.cpus_per_trial, workers=args.workers,
                        max_concurrent=args.max_concurrent,
                        scheduler=args.scheduler or getattr(study, "scheduler", None) or SweepOptions.scheduler,
                        search=args.search or getattr(study, "search", None) or SweepOptions.search,
                        max_failures=args.max_failures, num_cpus=args.num_cpus,
                        wait_for_nodes=args.wait_for_nodes, verbose=0 if args.quiet else 1,
                        log=args.log, mlflow_uri=args.mlflow_uri).validate()


# ------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from raylab.train.standalone import run_single

    overrides = {name: getattr(args, name) for name in config_fields() if getattr(args, name, None) is not None}
    cfg = TrialConfig.from_dict(overrides)
    return run_single(cfg, overrides, Path(args.out), resume=args.resume, progress=not args.quiet)


def cmd_run(args: argparse.Namespace) -> int:
    return _run(apply_run_flags(load_job(args.job), args), args)


def _run(study: Study, args: argparse.Namespace) -> int:
    opts = sweep_options(args, study)
    n = len(study.trials())  # validates every trial's config before Ray starts
    shared = len(study.variants) * len(study.seed_list) - n
    note = f" ({shared} repeat an identical config and share its trial)" if shared else ""
    space = study.space()
    if space:  # a searched study: say what is sampled, and how
        n *= study.num_samples
        note += f" ({opts.search} search over {', '.join(f'{k}={d}' for k, d in space.items())})"
    samples = f" x {study.num_samples} samples" if space else ""
    print(f"raylab: study {study.name}: {len(study.variants)} variants x {len(study.seed_list)} seeds{samples} "
          f"= {n} trials{note}")
    if not args.skip_doctor:
        from raylab.sweep.doctor import preflight
        preflight(opts)  # on a cluster: every node's code, packages and storage, before any trial
    from raylab.sweep.driver import run_study, study_dir

    run_study(study, opts)
    return _summary(study_dir(opts.storage, study.name))


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit 0 when every check passes, 2 when one does not (each problem names its fix)."""
    from raylab.sweep.doctor import run_doctor

    studies = [apply_run_flags(load_job(job), args) for job in args.jobs]
    return run_doctor(studies, sweep_options(args, studies[0] if studies else None))


def cmd_resume(args: argparse.Namespace) -> int:
    from raylab.sweep.driver import resume_study

    resume_study(args.study_dir, SweepOptions(address=args.address, num_cpus=args.num_cpus,
                                              verbose=0 if args.quiet else 1))
    return _summary(args.study_dir)


def _summary(root: str) -> int:
    """The per-variant table a sweep ends with; exit status 1 when a trial failed."""
    from raylab.results.status import variant_lines

    lines, failed = variant_lines(root)
    print("\n".join(lines))
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """One line per trial from the Parquet files: works while a sweep runs, or after."""
    from raylab.results.provenance import status_lines
    from raylab.results.status import trial_lines

    print("\n".join(trial_lines(args.study_dir) + status_lines(args.study_dir)))  # + where its numbers came from
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """`raylab compact STUDY`: what a sweep does at its end, for one that was killed before it."""
    from raylab.results.compaction import compact_study

    print(compact_study(args.study_dir))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Each study's variants, seeds and the trials `raylab run` trains (identical configs once)."""
    folder = Path(args.folder)
    files = sorted(f for f in folder.glob("*.py") if not f.name.startswith("_")) if folder.is_dir() else []
    if not files:
        raise UsageError(f"no job files in {folder}/: give the jobs folder of a raylab checkout")
    rows = [(s.name, len(s.variants), len(s.seed_list), len(s.trials()) * (s.num_samples if s.space() else 1), f)
            for f, s in ((f, load_job(str(f))) for f in files)]
    width = max(len("study"), *(len(row[0]) for row in rows))  # a long study name keeps the columns
    for row in [("study", "variants", "seeds", "trials", "file"), *rows]:
        print(f"{row[0]:<{width}} {row[1]:>8} {row[2]:>5} {row[3]:>6}  {row[4]}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from raylab.train.models import MODELS, build_model
    from raylab.declare.registry import USER, describe_options
    from raylab.train.model_summary import format_summary, model_summary

    if args.job:  # runs the job file's top level, which registers its @raylab.model builders
        load_job(args.job)
    known = [*MODELS, *USER]
    for name in [args.name] if args.name else known:
        if name not in known:
            raise UsageError(f"raylab models: unknown model '{name}': choose one of {', '.join(known)}"
                             + ("" if args.job else " (a job file's own models: add --job FILE)"))
        model = build_model(name, batchnorm=args.batchnorm, shortcut=args.shortcut)
        print(format_summary(model_summary(model, name=name)))
        if name in USER:
            print(f"from {args.job}; model_options: {describe_options(USER[name])}")
        print()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import main as report_main

    argv = list(args.studies) + (["--out", args.out] if args.out else []) + ["--format", args.format]
    return report_main(argv)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
