"""A study: a base config, named variants and seeds; each variant-seed pair is one trial.

    STUDY = Study("lab2_lr_sweep", base=dict(epochs=30),
                  variants=grid(lr=[1, 0.1, 0.05, 0.01, 0.005, 0.001]))

Variant names are readable and become the `variant` column: `lr=0.05`,
`bn+lr=0.1`, `swish`; a variant with no overrides is `baseline`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import runpy
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterable

from raylab.declare.claim import Claim, ClaimError
from raylab.declare.config import RUN_FIELDS, SCHEDULERS, SEARCHES, ConfigError, TrialConfig

# Short names of fields in variant names, to read well in legends ("" = the value alone);
# booleans appear only when True.
SHORT_NAMES = {"batchnorm": "bn", "weight_decay": "wd", "activation": "", "model": "", "augment": "augment"}


def variant_name(overrides: dict[str, Any]) -> str:
    parts = []
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key in RUN_FIELDS:
            continue
        short = SHORT_NAMES.get(key, key)
        if isinstance(value, bool):
            if value:
                parts.append(short or key)
        elif short == "":
            parts.append(str(value))
        else:
            parts.append(f"{short}={_fmt(value)}")
    return "+".join(parts) or "baseline"


def sampled_name(base_variant: str, sampled: dict[str, Any]) -> str:
    """A sampled trial's variant, `lr=0.0123+wd=3.1e-05` (3 significant digits), after the grid
    variant's own name unless that is `baseline` (raylab.declare.space: the values are drawn per trial)."""
    parts = [] if base_variant == "baseline" else [base_variant]
    for key in sorted(sampled):
        short, value = SHORT_NAMES.get(key, key), sampled[key]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{short}={text}" if short else text)
    return "".join(c if c.isalnum() or c in "._-+=," else "_" for c in "+".join(parts))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_fmt, value))
    return str(value)


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]
    study: str = ""  # set when the variant came from another study through combine()


def variant(name: str | None = None, **overrides: Any) -> Variant:
    """One named variant; the name defaults to one made from the overrides."""
    return Variant(name or variant_name(overrides), dict(overrides))


def grid(**axes: Iterable[Any]) -> list[Variant]:
    """Every combination of the given values: grid(batchnorm=[False, True], lr=[0.1, 0.01])."""
    keys = list(axes)
    return [variant(**dict(zip(keys, combo))) for combo in itertools.product(*(list(axes[k]) for k in keys))]


@dataclass(frozen=True)
class Trial:
    study: str
    variant: str
    seed: int
    config: TrialConfig
    combined: bool = False  # part of a combine()d sweep: the id names its study
    shared_with: tuple[tuple[str, str], ...] = ()  # (study, variant) pairs of the identical config


    @property
    def trial_id(self) -> str:
        # Stable across runs and resumes: made from the study's content, never a timestamp.
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.variant)
        return f"{self.study}.{safe}_s{self.seed}" if self.combined else f"{safe}_s{self.seed}"

    def metas(self) -> list[dict[str, str]]:
        """The result keys this trial's rows are written under: its own, then those it is shared with."""
        names = [(self.study, self.variant), *self.shared_with]
        return [{"study": st, "variant": v,
                 "trial_id": Trial(st, v, self.seed, self.config, self.combined).trial_id} for st, v in names]


@dataclass
class Study:
    name: str
    variants: list[Variant] = field(default_factory=lambda: [variant()])
    base: dict[str, Any] = field(default_factory=dict)
    seeds: int | list[int] = 1
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # command-line run options: beat every variant
    # The course report's side, carried into study.json for analysis (never hard-coded there):
    claims: list[Claim] = field(default_factory=list)      # statements the study tests
    reported: dict[str, float] = field(default_factory=dict)  # variant -> the report's best val acc
    reported_epochs: int | None = None                     # epochs behind those numbers
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (a, b) drawn side by side: b - a
    num_samples: int = 1  # draws per variant-seed pair where a config value is a distribution (raylab.declare.space)
    search: str | None = None     # one of SEARCHES; --search beats it (default: SweepOptions.search)
    scheduler: str | None = None  # one of SCHEDULERS; --scheduler beats it (default: SweepOptions.scheduler)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ConfigError(f"study name '{self.name}' must be letters, digits, '_' or '-'")
        names = [(v.study, v.name) for v in self.variants]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"study {self.name}: variant names repeat: {sorted(n for _, n in dup)}; "
                              "name them with variant(name=...)")
        if not self.variants:
            raise ConfigError(f"study {self.name} has no variants")
        self.claims = [c if c.configs else self._resolve(c) for c in self.claims]
        for name, allowed in (("search", SEARCHES), ("scheduler", SCHEDULERS)):
            if getattr(self, name) not in (None, *allowed):
                raise ConfigError(f"study {self.name}: {name} '{getattr(self, name)}' is not one of: {', '.join(allowed)}")
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or self.num_samples < 1:
            raise ConfigError(f"study {self.name}: num_samples must be an integer >= 1, got {self.num_samples!r}")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def with_options(self, *, seeds: int | None = None, **options: Any) -> "Study":
        """A copy with run options forced on every trial (--epochs, --data, --seeds ...)."""
        return dataclasses.replace(self, seeds=self.seeds if seeds is None else seeds,
                                   options={**self.options, **options})  # keeps num_samples, search, scheduler

    def space(self) -> dict[str, Any]:
        """Config fields given a distribution (field -> raylab.declare.space.Dist); {} for a grid study."""
        from raylab.declare.space import split
        return {k: d for v in self.variants for k, d in split({**self.base, **v.overrides, **self.options})[1].items()}

    def trials(self) -> list[Trial]:
        """Every variant-seed pair, validated now so a typo fails before Ray starts.

        A searched field keeps its default here; raylab.declare.space samples it per trial."""
        from raylab.declare.space import check_space, split

        out = []
        for v in self.variants:
            for seed in self.seed_list:
                try:
                    fixed, space = split({**self.base, **v.overrides, **self.options, "seed": seed})
                    cfg = TrialConfig.from_dict(fixed)
                    check_space(fixed, space)
                except ConfigError as exc:
                    raise ConfigError(f"study {self.name}, variant '{v.name}': {exc}") from None
                out.append(Trial(v.study or self.name, v.name, seed, cfg, combined=bool(v.study)))
        return _merge_identical(out) if any(v.study for v in self.variants) else out

    def swept(self) -> list[str]:
        """Config fields whose value differs between variants or is sampled (the sweep axes)."""
        from raylab.declare.space import split

        keys = sorted({k for v in self.variants for k in v.overrides})
        base = TrialConfig.from_dict(split(self.base)[0]).to_dict()
        space = self.space()
        grid = [k for k in keys if k not in self.options and k not in space
                and len({json.dumps(v.overrides.get(k, base[k]), default=str) for v in self.variants}) > 1]
        return grid + sorted(space)

    def describe(self) -> dict[str, Any]:
        """What study.json records; a combined study also lists its parts, in job order."""
        def key(v: Variant) -> str:
            return f"{v.study}/{v.name}" if v.study else v.name

        out = {"name": self.name, "description": self.description, "swept": self.swept(),
               "variants": [key(v) for v in self.variants], "seeds": self.seed_list,
               "base": self.base, "options": self.options,
               "overrides": {key(v): v.overrides for v in self.variants}}
        out["claims"] = [c.to_dict() for c in self.claims]
        out["reported"] = [{"study": st, "variant": v, "value": val, "epochs": ep, "config": cfg}
                           for st, v, val, ep, cfg in self.reported_values()]
        out["pairs"] = [{"study": st, "a": a, "b": b} for st, a, b in self.pair_list()]
        space = self.space()
        if space:  # what was searched, and how: raylab report reads it for the search plots
            out["space"] = {k: {"kind": d.kind, "args": list(d.args)} for k, d in space.items()}
            out["num_samples"] = self.num_samples
        parts = list(dict.fromkeys(v.study for v in self.variants if v.study))
        if parts:
            out["studies"] = [{"name": p, "variants": [v.name for v in self.variants if v.study == p],
                               "swept": Study(p, [v for v in self.variants if v.study == p]).swept()}
                              for p in parts]
        return out

    def reported_values(self) -> list[tuple[str, str, float, int | None, dict[str, Any]]]:
        """(study, variant, the course report's value, its epochs, the variant's config): the value
        is shown next to trials of that config only. A combined study holds its parts'."""
        return [(self.name, v, val, self.reported_epochs, self.variant_config(self.name, v))
                for v, val in self.reported.items()]

    def pair_list(self) -> list[tuple[str, str, str]]:
        return [(self.name, a, b) for a, b in self.pairs]

    def _resolve(self, c: Claim) -> Claim:
        """Fix the claim's study, its `among` (best: every other variant) and each variant's
        config now, so --only/--skip, which drop variants, never change what it compares."""
        study = c.study or self.name
        mine = [v for v in self.variants if (v.study or self.name) == study]
        among = c.among or (tuple(v.name for v in mine if v.name != c.a) if c.kind == "best" else ())
        c = _replace(c, study=study, among=among)
        for name in c.variants():
            if not any(v.name == name for v in mine):
                raise ClaimError(f"study {study}: claim '{c.text}' names variant '{name}', which the study "
                                 f"does not have: use one of {[v.name for v in mine]}")
        return _replace(c, configs={name: self.variant_config(study, name) for name in c.variants()})

    def variant_config(self, study: str, name: str) -> dict[str, Any]:
        """What makes a variant's trials the same experiment: its full config less the run
        fields (epochs kept), and less `pad` without augment (the padding exists only in crops)."""
        v = next(v for v in self.variants if (v.study or self.name, v.name) == (study, name))
        cfg = TrialConfig.from_dict({**self.base, **v.overrides}).to_dict()
        inert = set() if cfg["augment"] else {"pad"}
        return {k: val for k, val in cfg.items() if (k not in RUN_FIELDS or k == "epochs") and k not in inert}


def _replace(c: Claim, **changes: Any) -> Claim:
    return dataclasses.replace(c, **changes)


def _merge_identical(trials: list[Trial]) -> list[Trial]:
    """In a combined sweep, train each distinct config once: the course report's
    baseline appears in five studies, and its rows are written under all five."""
    first: dict[str, Trial] = {}
    for t in trials:
        key = t.config.to_json()
        if key in first:
            f = first[key]
            first[key] = dataclasses.replace(f, shared_with=f.shared_with + ((t.study, t.variant),))
        else:
            first[key] = t
    return list(first.values())


def combine(name: str, studies: list[Study], description: str = "") -> Study:
    """One sweep of several studies; each row keeps its own study name.

    Each study's base config is folded into its variants, so `assignment`
    trains exactly what the separate job files would (each distinct config
    once), and `analysis` reads the combined folder as several studies.
    """
    variants = [Variant(v.name, {**s.base, **v.overrides}, study=s.name) for s in studies for v in s.variants]
    return _Combined(name, variants, seeds=studies[0].seeds if studies else 1, description=description,
                     claims=[c for s in studies for c in s.claims], parts=list(studies))


@dataclass
class _Combined(Study):
    """combine()'s result: also carries its parts' reported values and pairs."""
    parts: list[Study] = field(default_factory=list)

    def reported_values(self) -> list[tuple[str, str, float, int | None, dict[str, Any]]]:
        return [r for s in self.parts for r in s.reported_values()]

    def pair_list(self) -> list[tuple[str, str, str]]:
        return [p for s in self.parts for p in s.pair_list()]


def select(study: Study, only: list[str], skip: list[str]) -> Study:
    """Keep the variants whose `study/variant` name matches --only and not --skip."""
    def name(v: Variant) -> str:
        return f"{v.study or study.name}/{v.name}"

    kept = [v for v in study.variants
            if (not only or any(fnmatchcase(name(v), p) for p in only))
            and not any(fnmatchcase(name(v), p) for p in skip)]
    if not kept:
        raise ConfigError(f"--only/--skip left no variant of study {study.name}: "
                          f"its variants are {', '.join(name(v) for v in study.variants[:6])}...")
    return dataclasses.replace(study, variants=kept)


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

