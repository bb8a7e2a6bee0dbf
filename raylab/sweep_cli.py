"""The sweep commands: `raylab run | resume | status | list`, and job files run as scripts.

A job file is a short declaration that binds a `Study` to the name STUDY and
ends with `raise SystemExit(STUDY.main())`, so `python jobs/FILE.py --epochs 5`
and `raylab run jobs/FILE.py --epochs 5` do the same thing.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import runpy
import sys
from pathlib import Path

from raylab.config import ConfigError
from raylab.study import Study

RUN_FLAGS_HELP = "run options; any config field can be forced with --set FIELD=VALUE"


def add_commands(sub) -> None:
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

    p = sub.add_parser("list", help="the studies in a jobs folder, with variant and trial counts")
    p.add_argument("folder", nargs="?", default="jobs")
    p.set_defaults(func=cmd_list)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options", RUN_FLAGS_HELP)
    g.add_argument("--epochs", type=int, help="epochs per trial (default: the study's)")
    g.add_argument("--seeds", type=int, help="seeds per variant (default: the study's)")
    g.add_argument("--data", help="cifar10 | folder:PATH | synthetic[:N]")
    g.add_argument("--data-root", help="where cifar10 and the decoded caches live (default: data)")
    g.add_argument("--storage", default="results", help="results root: a folder or s3://... (default: results)")
    g.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: start a local Ray)")
    g.add_argument("--gpus-per-trial", type=float, help="GPU share per trial, e.g. 0.25 (default: per model)")
    g.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default: 1, 2 with a whole GPU)")
    g.add_argument("--workers", type=int, default=1, help="DDP workers per trial (default 1: no DDP)")
    g.add_argument("--max-concurrent", type=int, default=0, help="at most this many trials at once")
    g.add_argument("--scheduler", choices=("fifo", "asha", "pbt"), default=None,
                   help="asha: stop weak trials early; pbt: clone strong trials' weights and perturb lr/momentum/wd")
    g.add_argument("--search", choices=("random", "optuna"), default=None,
                   help="how a study's distributions are sampled (default: the study's, else random; optuna: TPE)")
    g.add_argument("--num-samples", type=int, help="draws per variant-seed pair of a searched study (default: the study's)")
    g.add_argument("--log", choices=("mlflow",), default="",
                   help="also log to MLflow (TensorBoard event files are always written)")
    g.add_argument("--mlflow-uri", help="MLflow tracking URI (default: a file store in the study folder)")
    g.add_argument("--max-failures", type=int, default=2, help="restarts of a crashed trial (default 2)")
    g.add_argument("--num-cpus", type=int, help="CPUs local Ray may use (default: all)")
    g.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="force a config field on every trial")
    g.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="run only variants whose STUDY/VARIANT name matches, e.g. 'lab2_*' or '*/lr=0.1'")
    g.add_argument("--skip", action="append", default=[], metavar="GLOB", help="leave out matching variants")
    g.add_argument("--quiet", action="store_true", help="no Tune progress table")


def sweep_options(args: argparse.Namespace):
    from raylab.tune import SweepOptions

    for name in ("workers", "max_concurrent", "max_failures"):
        if getattr(args, name) < (1 if name == "workers" else 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {1 if name == 'workers' else 0}")
    if args.gpus_per_trial is not None and not (0 <= args.gpus_per_trial and math.isfinite(args.gpus_per_trial)):
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
    if args.cpus_per_trial is not None and not args.cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    return SweepOptions(storage=args.storage, address=args.address, gpus_per_trial=args.gpus_per_trial,
                        cpus_per_trial=args.cpus_per_trial, workers=args.workers,
                        max_concurrent=args.max_concurrent, scheduler=args.scheduler or "fifo",
                        max_failures=args.max_failures, num_cpus=args.num_cpus, verbose=0 if args.quiet else 1,
                        search=args.search or "random", log=args.log, mlflow_uri=args.mlflow_uri)


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


def select(study: Study, only: list[str], skip: list[str]) -> Study:
    """Keep the variants whose `study/variant` name matches --only and not --skip."""
    from fnmatch import fnmatchcase

    def name(v) -> str:
        return f"{v.study or study.name}/{v.name}"

    kept = [v for v in study.variants
            if (not only or any(fnmatchcase(name(v), p) for p in only))
            and not any(fnmatchcase(name(v), p) for p in skip)]
    if not kept:
        raise ConfigError(f"--only/--skip left no variant of study {study.name}: "
                          f"its variants are {', '.join(name(v) for v in study.variants[:6])}...")
    return dataclasses.replace(study, variants=kept)


# ------------------------------------------------------------------ commands
def load_job(path: str) -> Study:
    """Run a job file's top level (not its __main__ block) and return its Study."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"job file {path} not found: see `raylab list` for the studies in jobs/")
    try:
        namespace = runpy.run_path(str(file), run_name="raylab_job")
    except SyntaxError as exc:
        raise ConfigError(f"job file {path} line {exc.lineno}: {exc.msg}") from None
    except ConfigError as exc:
        raise ConfigError(f"job file {path}: {exc}") from None
    except Exception as exc:  # the job file's own code failed: say where, in one line
        import traceback
        line = next((f.lineno for f in reversed(traceback.extract_tb(exc.__traceback__))
                     if Path(f.filename).resolve() == file.resolve()), "?")
        raise ConfigError(f"job file {path} line {line}: {type(exc).__name__}: {exc}") from None
    study = namespace.get("STUDY")
    if not isinstance(study, Study):
        found = [v for v in namespace.values() if isinstance(v, Study)]
        if len(found) != 1:
            raise ConfigError(f"job file {path} defines no study: bind one to STUDY = Study(...)")
        study = found[0]
    return study


def cmd_run(args: argparse.Namespace) -> int:
    study = apply_run_flags(load_job(args.job), args)
    return _run(study, args)


def run_study_main(study: Study, argv: list[str] | None = None) -> int:
    """Entry point of a job file run as a script; same flags as `raylab run`."""
    from raylab.cli import _Parser, main_guard

    parser = _Parser(prog=Path(sys.argv[0]).name, description=study.description or study.name)
    add_run_flags(parser)

    def go() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        return _run(apply_run_flags(study, args), args)

    return main_guard(go, debug="--debug" in (sys.argv if argv is None else argv))


def _run(study: Study, args: argparse.Namespace) -> int:
    from raylab.tune import run_study, study_dir

    opts = sweep_options(args)
    # A job file may declare its search and scheduler; the command line beats it.
    opts.search = args.search or study.search or "random"
    opts.scheduler = args.scheduler or study.scheduler or "fifo"
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
    run_study(study, opts)
    return _summary(study_dir(opts.storage, study.name))


def cmd_resume(args: argparse.Namespace) -> int:
    from raylab.tune import SweepOptions, resume_study

    resume_study(args.study_dir, SweepOptions(address=args.address, num_cpus=args.num_cpus,
                                              verbose=0 if args.quiet else 1))
    return _summary(args.study_dir)


def _summary(root: str) -> int:
    """Variant, seeds, best val acc mean ± std: the table a user reads first."""
    from raylab.results import TRIALS, read_table

    trials = read_table(root, TRIALS)
    several = trials["study"].nunique() > 1  # a combined sweep: name each row's study too
    print()
    print(f"{'variant':<36} {'seeds':>5} {'best val acc':>17} {'status'}")
    for (study, variant), g in trials.groupby(["study", "variant"], sort=False):
        acc = g["best_val_acc"].astype(float)
        std = f"± {acc.std():.4f}" if len(acc) > 1 else "       "
        states = ", ".join(f"{k} {v}" for k, v in g["status"].value_counts().items())
        name = f"{study}/{variant}" if several else variant
        print(f"{name:<36} {len(g):>5} {acc.mean():>8.4f} {std} {states}")
    failed = int((trials["status"] == "failed").sum())
    print(f"\nresults: {root}/  (metrics.parquet, trials.parquet, weights.parquet)")
    if failed:
        print(f"{failed} trial(s) failed: `raylab resume {root}` retries them from their checkpoints")
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """One line per trial from the Parquet files: works while a sweep runs, or after."""
    from raylab.results import METRICS, TRIALS, read_table

    trials = read_table(args.study_dir, TRIALS)
    metrics = read_table(args.study_dir, METRICS, required=False)
    best = metrics.groupby("trial_id")["val_acc"].max()
    print(f"{'trial':<36} {'status':<10} {'epoch':>9} {'best val acc':>13} {'restarts':>8}")
    for row in trials.sort_values("trial_id").to_dict("records"):
        done, total = _int(row.get("epochs_run")), _int(row.get("epochs"))
        print(f"{row['trial_id']:<36} {row['status']:<10} {done:>4}/{total:<4} "
              f"{best.get(row['trial_id'], float('nan')):>13.4f} {_int(row.get('restarts')):>8}")
    counts = trials["status"].value_counts().to_dict()
    print("\n" + ", ".join(f"{v} {k}" for k, v in counts.items()) + f"; {len(metrics)} epoch rows")
    return 0


def _int(value) -> int:
    """Missing or NaN (a trial that has not reported yet) reads as 0."""
    return int(value) if value is not None and value == value else 0


def cmd_list(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    files = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"no job files in {folder}/: give the jobs folder of a raylab checkout")
    print(f"{'study':<20} {'variants':>8} {'seeds':>5} {'trials':>6}  file")
    for file in files:
        if file.name.startswith("_"):
            continue
        study = load_job(str(file))
        samples = study.num_samples if study.space() else 1  # a searched study: draws per variant-seed
        print(f"{study.name:<20} {len(study.variants):>8} {len(study.seed_list):>5} "
              f"{len(study.variants) * len(study.seed_list) * samples:>6}  {file}")
    return 0
