"""`raylab` command line: train | run | resume | status | list | models | report.

User mistakes end as one line on stderr and exit status 2, never a traceback;
`--debug` shows the traceback anyway. Anything else is a bug and shows one.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from pathlib import Path
from typing import Sequence

from raylab.config import ConfigError, TrialConfig, config_fields


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit 2)."""


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


def main_guard(fn, debug: bool = False) -> int:
    """Run a command: a user error becomes one line and exit 2, a bug keeps its traceback."""
    try:
        return fn()
    except KeyboardInterrupt:
        print("raylab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raylab status ... | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")
        return 0
    except Exception as exc:
        if debug or not _is_user_error(exc):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(text if text.startswith("raylab") else f"raylab: error: {text}", file=sys.stderr)
        return 2


def _is_user_error(exc: BaseException) -> bool:
    from raylab.results import ResultsError

    user = (UsageError, ConfigError, ResultsError)
    try:
        from raylab.data import DataError
        user += (DataError,)
    except ImportError:
        pass
    # The disk, not the code: say which file, not where in raylab it happened.
    full_or_locked = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
    return isinstance(exc, user) or (isinstance(exc, OSError) and exc.errno in full_or_locked)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raylab", description="CIFAR-10 CNN studies on Ray Tune. --debug shows tracebacks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("train", help="train one model in this process, write Parquet results")
    add_config_flags(p)
    p.add_argument("--out", required=True, help="results folder (metrics/trials/weights.parquet)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="parameter shapes, counts and MACs of the registered models")
    p.add_argument("name", nargs="?", help="one model (default: all)")
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--shortcut", default="A", choices=("A", "B"))
    p.add_argument("--job", help="a job file: also list the models it declares with @raylab.model")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("report", help="write report.md (+ figures) for study folders")
    p.add_argument("studies", nargs="+", metavar="STUDY_DIR")
    p.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    p.add_argument("--format", default="md", choices=("md", "html"))
    p.set_defaults(func=cmd_report)

    from raylab import sweep_cli  # the Ray-based commands live with the sweep layer
    sweep_cli.add_commands(sub)
    return parser


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrialConfig field (`--weight-decay`, `--batchnorm/--no-batchnorm`)."""
    for f in dataclasses.fields(TrialConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=kind.split("[")[0].upper(),
                           help=f"default: {_show(f.default)}")


def config_overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in config_fields() if getattr(args, name, None) is not None}


def _show(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# ------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from raylab.single import run_single

    overrides = config_overrides(args)
    cfg = TrialConfig.from_dict(overrides)
    return run_single(cfg, overrides, Path(args.out), resume=args.resume, progress=not args.quiet)


def cmd_models(args: argparse.Namespace) -> int:
    from raylab.models import MODELS, build_model, format_summary, summarize

    from raylab.registry import USER, describe_options

    if args.job:  # runs the job file's top level, which registers its @raylab.model builders
        from raylab.sweep_cli import load_job
        load_job(args.job)
    names = [args.name] if args.name else list(MODELS)
    for name in names:
        if name not in MODELS:
            raise UsageError(f"raylab models: unknown model '{name}': choose one of {', '.join(MODELS)}"
                             + ("" if args.job else " (a job file's own models: add --job FILE)"))
        model = build_model(name, batchnorm=args.batchnorm, shortcut=args.shortcut)
        print(format_summary(summarize(model, name=name)))
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
