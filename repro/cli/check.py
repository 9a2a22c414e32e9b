"""Checking a ``repro-train`` command: parse it as Hydra will, expand a multirun into its
jobs, compose and validate each job, and turn every failure into one line naming the fix.

Hydra's own errors are 10-30 lines long, list the schema configs as options, suggest
``+key=value`` for a misspelt key (which then trains with the key silently ignored), and
arrive after Hydra has made its output folder. So :func:`check` composes the config of
every job with Hydra's compose API, in the same way Hydra will (a multirun is expanded by
Hydra's own override parser and ``BasicSweeper.split_arguments``, including a profile's
``hydra.sweeper.params``), checks each override against the schema, and runs
:func:`repro.config.validate`. Composing writes nothing: no MLflow store, no checkpoint,
no ``outputs/`` or ``multirun/`` folder. The "did you mean" suggestions live here with the
checks because each one is worked out from the failure it explains.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from hydra import compose
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from repro import config as schema
from repro.cli.conf import CONF_DIR, CONFIG_NAME, PROG, group_options, hydra_context, user_groups
from repro.config import ConfigError, validate

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
#: conf/hydra/sweeper/planned.yaml (the default): the basic sweeper's jobs, less duplicate runs
PLANNED_SWEEPER = "hydra_plugins.repro_sweeper.planned_sweeper.PlannedSweeper"


class Refused(Exception):
    """A command the front door turns away; ``str()`` is the line after ``error: ``."""


def check(argv: Sequence[str]) -> list[DictConfig]:
    """The composed config of every job ``repro-train ARGV`` would run, each validated.

    Raises :class:`Refused` naming the fix. Returns [] for Hydra's informational flags
    (``--info``, ``--hydra-help``, shell completion, ``-cp``/``-cd``), which go to Hydra
    unchecked. With ``--cfg`` (print the config) the structure and types are checked but not
    the ranges of :func:`validate`, so a config can still be inspected.
    """
    args = parse_args(argv)
    modes = [flag for flag, on in (("--run", args.run), ("-m", args.multirun), ("--cfg", args.cfg), ("--info", args.info),
                                   ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:
        raise Refused(f"{' and '.join(modes)} exclude each other: keep one (--cfg job prints one job's config, without -m)")
    if args.hydra_help or args.info or args.shell_completion or args.experimental_rerun \
            or args.config_path or args.config_dir:
        return []
    overrides = [parse_override(line) for line in args.overrides]
    multirun = args.multirun or any(o.key_or_group == "hydra.mode" and str(o.value()) == "MULTIRUN" for o in overrides)
    config_name = args.config_name or CONFIG_NAME
    with hydra_context() as (gh, loader):
        checker = _Checker(gh, loader, config_name)
        if multirun:
            jobs = checker.sweep_jobs(overrides)
        else:
            for o in overrides:
                if o.is_sweep_override():
                    raise Refused(f"{o.input_line} is a sweep: add -m ({PROG} -m {o.input_line}), "
                                  f"or write a list as {o.key_or_group}=[a,b] or a string as {o.key_or_group}='a,b'")
            jobs = [overrides]
        configs = [checker.job_config(job, run_checks=args.cfg is None) for job in jobs]
    return configs


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Hydra's own command-line parser, with its usage errors turned into one line."""
    parser = get_args_parser()
    parser.prog = PROG

    def error(message: str) -> NoReturn:
        fix = ""
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flags = [s for a in parser._actions for s in a.option_strings]
            match = difflib.get_close_matches(unknown.group(1).split("=")[0], flags, n=1)
            fix = f"; did you mean {match[0]}?" if match else ""
        raise Refused(f"{message}{fix} ({PROG} --help lists the flags and keys)")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(list(argv))


def parse_override(line: str, loader: Any = None) -> Override:
    """One command-line override, parsed as Hydra will (with the config loader, a sweeper's
    ``glob(...)`` over a group's options works); a parse error names the override."""
    try:
        return OverridesParser.create(config_loader=loader).parse_overrides([line])[0]
    except (OverrideParseException, HydraException) as exc:
        if "=" not in line:
            with hydra_context() as (_, loader):
                groups = [g for g in user_groups(loader) if line in group_options(loader, g)]
            hint = f"did you mean {groups[0]}={line}?" if groups else "e.g. pruner=pmp or sparsity=0.9"
            raise Refused(f"{line}: an override is KEY=VALUE or GROUP=OPTION; {hint}") from None
        reason = str(exc).splitlines()
        detail = next((r for r in reason if r and not r.startswith(("Error parsing", "See "))), "syntax error")
        raise Refused(f"{line}: cannot parse it ({detail}); quote values with spaces or special characters, "
                      f"e.g. 'data.root=/my dir', and close brackets: key=[a,b]") from None


class _Checker:
    """Composes jobs like Hydra does and turns each failure into one line naming the fix."""

    def __init__(self, gh: Any, loader: Any, config_name: str) -> None:
        self.gh = gh
        self.loader = loader
        self.config_name = config_name
        #: composed configs by their group overrides (the costly part; values apply per job)
        self.cache: dict[tuple[str, ...], DictConfig] = {}

    # -------------------------------------------------------------- multirun
    def sweep_jobs(self, overrides: list[Override]) -> list[list[Override]]:
        """Every job of a multirun, as Hydra's BasicSweeper will launch them."""
        try:
            master = self.gh.hydra.compose_config(config_name=self.config_name, overrides=[o.input_line for o in overrides],
                                                  run_mode=RunMode.MULTIRUN, from_shell=True,
                                                  with_log_configuration=False)
        except (HydraException, OmegaConfBaseException) as exc:
            raise Refused(self.explain(exc, overrides)) from None
        hydra_overrides = [o for o in overrides if o.is_hydra_override()]
        task = [o for o in overrides if not o.is_hydra_override()]
        sweeper = master.hydra.sweeper
        if sweeper.get("_target_") not in (BASIC_SWEEPER, PLANNED_SWEEPER):
            # another sweeper (e.g. Optuna) picks its own values: check the fixed part
            return [hydra_overrides + [o for o in task if not o.is_sweep_override()]]
        params = [parse_override(f"{k}={v}", self.loader) for k, v in (sweeper.get("params") or {}).items()]
        task = [parse_override(o.input_line, self.loader) for o in task]
        try:
            batches = BasicSweeper.split_arguments(params + task, None)
        except HydraException as exc:
            raise Refused(f"{exc}: the basic sweeper takes comma lists (a,b,c) and range(...), not intervals") from None
        return [hydra_overrides + [parse_override(line) for line in job] for batch in batches for job in batch]

    # -------------------------------------------------------------- one job
    def job_config(self, job: list[Override], run_checks: bool = True) -> DictConfig:
        """The composed (and, with run_checks, validated) config of one job."""
        group_part = [o for o in job if self.is_group_override(o)]
        key_part = [o for o in job if not self.is_group_override(o)]
        cache_key = tuple(o.input_line for o in group_part)
        if cache_key not in self.cache:
            try:
                self.cache[cache_key] = compose(self.config_name, overrides=list(cache_key))
            except (HydraException, OmegaConfBaseException) as exc:
                raise Refused(self.explain(exc, group_part)) from None
        cfg = copy.deepcopy(self.cache[cache_key])
        for o in key_part:
            self.check_key(o, cfg)
            try:
                ConfigLoaderImpl._apply_overrides_to_config([o], cfg)
            except (HydraException, OmegaConfBaseException) as exc:
                raise Refused(self.explain_value(o, exc, cfg)) from None
        if run_checks:
            try:
                OmegaConf.to_container(cfg, resolve=True)
                validate(cfg)
            except ConfigError as exc:
                raise Refused(str(exc)) from None
            except OmegaConfBaseException as exc:
                detail = first_line(str(exc)).replace("raised while resolving interpolation", "")
                raise Refused(f"{exc.full_key}: cannot resolve its value ({detail}); set what it refers to, "
                              f"or give a plain value") from None
        return cfg

    def is_group_override(self, o: Override) -> bool:
        """Hydra's rule: an override selects a config when its key names a config group."""
        if o.is_hydra_override() or o.package is not None:
            return True
        try:
            value = o.value()
        except Exception:  # noqa: BLE001 - a sweep has no single value
            value = None
        return self.loader.repository.group_exists(o.key_or_group) and not isinstance(value, dict)

    def check_key(self, o: Override, cfg: DictConfig) -> None:
        """The key of a value override exists in the schema; ``+`` adds keys only to free-form
        dicts (pruner.layer_rates), never to a schema, and never to a key that is set."""
        if o.is_delete():
            return
        parts = o.key_or_group.split(".")
        node: Any = cfg
        for i, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                return  # a list index or a value: Hydra's merge decides
            last = i == len(parts) - 1
            if part in node.keys():
                if last and o.is_add() and node.get(part) is not None and not isinstance(o.value(), dict | list):
                    raise Refused(f"{o.input_line}: {o.key_or_group} already exists; drop the +: {o.input_line[1:]}")
                node = node._get_node(part)
                continue
            parent = ".".join(parts[:i])
            if last and OmegaConf.get_type(node) in (dict, None) and parent:
                if o.is_add() or o.is_force_add():
                    return
                raise Refused(f"{o.input_line}: {parent} has no key {part} yet; add it with +{o.input_line}")
            raise Refused(self.unknown_key(o, parts, i, node))

    @staticmethod
    def unknown_key(o: Override, parts: list[str], i: int, node: DictConfig) -> str:
        """A misspelt key, with or without +, with the closest real key."""
        part, parent = parts[i], ".".join(parts[:i])
        keys = [str(k) for k in node.keys()]
        where = parent or "the config"
        added = f" (+ cannot add a key to {where})" if o.is_add() or o.is_force_add() else ""
        line = f"{o.input_line}: {where} has no key {part}{added}"
        match = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
        if match:
            value = o.input_line.split("=", 1)[1] if "=" in o.input_line else ""
            fixed = ".".join([*parts[:i], match[0], *parts[i + 1:]])
            return f"{line}; did you mean {fixed}={value}?"
        owners = [path.split("/")[1] for path, cls in schema.SCHEMAS.items()
                  if parent == "pruner" and path.startswith("pruner/") and part in cls.__dataclass_fields__]
        if owners:
            return f"{line}; {parent}.{part} belongs to pruner={' / pruner='.join(owners)}"
        return f"{line}; {'its' if parent else 'top-level'} keys: {', '.join(keys)} ({PROG} --help)"

    # -------------------------------------------------------------- messages
    def explain(self, exc: Exception, overrides: list[Override]) -> str:
        """A composition failure (an unknown group option, a group not in the defaults list)."""
        if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
            for o in overrides:
                try:
                    value = o.value()
                except Exception:  # noqa: BLE001
                    continue
                if isinstance(value, str) and f"{o.key_or_group}/{value}" == exc.missing_cfg_file:
                    return self.unknown_option(o, o.key_or_group, value)
            if isinstance(exc, MissingConfigException) and exc.missing_cfg_file == self.config_name:
                return f"no primary config {self.config_name} in {CONF_DIR}: drop --config-name, or name a YAML file there"
        message = str(exc)
        missing_key = re.match(r"Could not override '([^']+)'\.\s*To append", message)
        culprit = next((o for o in overrides if missing_key and o.key_or_group == missing_key.group(1)), None)
        if culprit is not None and culprit.is_hydra_override():  # hydra.job.chdirr=true
            try:
                self.check_key(culprit, compose(self.config_name, return_hydra_config=True))
            except Refused as refused:
                return str(refused)
        if "No match in the defaults list" in message:
            key = re.search(r"Could not override '([^']+)'", message)
            if key:
                line = next((o.input_line for o in overrides if o.key_or_group == key.group(1)), key.group(1))
                return f"{line}: {key.group(1)} is not selected by default; add it with +{line.lstrip('+')}"
        multiple = re.match(r"Multiple values for ([^.\s]+)\.", message)
        if multiple:
            line = next((o.input_line for o in overrides if o.key_or_group == multiple.group(1)), multiple.group(1))
            return f"{line}: {multiple.group(1)} is already selected; drop the +: {line.lstrip('+')}"
        if "Could not append to config" in message:
            key = re.search(r"already at '([^']+)'", message)
            line = next((o.input_line for o in overrides if key and o.key_or_group == key.group(1)), "")
            return f"{line}: {key.group(1) if key else 'it'} is already selected; drop the +: {line.lstrip('+')}"
        return first_line(message, join=True)

    def unknown_option(self, o: Override, group: str, value: str) -> str:
        """``pruner=pmpp`` -> did you mean pruner=pmp?"""
        options = group_options(self.loader, group)
        sub = value.rpartition("/")[0]
        if sub and any(o.startswith(f"{sub}/") for o in options):  # row=mnist/...: list that subgroup only
            options = [o for o in options if o.startswith(f"{sub}/")]
        prefix = o.input_line[: len(o.input_line) - len(o.input_line.lstrip("+~"))]
        line = f"{prefix}{group}={value}"
        match = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
        hint = f"did you mean {prefix}{group}={match[0]}? " if match else ""
        return f"{line}: {group} has no option {value}; {hint}(options: {', '.join(options)})"

    @staticmethod
    def explain_value(o: Override, exc: Exception, cfg: DictConfig) -> str:
        """A value the schema refuses: a wrong type, or a dict with unknown keys."""
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        key = getattr(cause, "full_key", None) or o.key_or_group
        if isinstance(cause, ConfigKeyError | ConfigAttributeError):
            parts = str(key).split(".")
            node: Any = cfg
            for part in parts[:-1]:
                node = node._get_node(part) if isinstance(node, DictConfig) and part in node.keys() else None
            if isinstance(node, DictConfig):
                match = difflib.get_close_matches(parts[-1], [str(k) for k in node.keys()], n=1, cutoff=0.6)
                hint = f"; did you mean {'.'.join([*parts[:-1], match[0]])}?" if match else ""
                return f"{o.input_line}: {'.'.join(parts[:-1]) or 'the config'} has no key {parts[-1]}{hint}"
        if isinstance(cause, ValidationError):
            return f"{o.input_line}: {type_fix(cfg, str(key))}"
        return f"{o.input_line}: {first_line(str(cause), join=True)}"


def type_fix(cfg: DictConfig, key: str) -> str:
    """What a key takes, from its schema node, with its current value as the example."""
    node: Any = cfg
    for part in key.split("."):
        node = node._get_node(part) if isinstance(node, DictConfig | ListConfig) else None
        if node is None:
            return f"{key} does not take that type"
    kind = type(node).__name__
    current = node._value()
    if isinstance(node, DictConfig):
        example = next(iter(node.keys()), "KEY")
        return f"{key} holds keys, not a value; set one of them, e.g. {key}.{example}=..."
    if isinstance(node, ListConfig):
        items = ",".join(str(v) for v in node._value()) if isinstance(node._value(), list | ListConfig) else "a,b"
        return f"{key} takes a list, e.g. {key}=[{items or 'a,b'}]"
    takes = {"IntegerNode": "a whole number", "FloatNode": "a number", "BooleanNode": "true or false",
             "StringNode": "a string"}.get(kind, "another type")
    if node._is_optional() and kind != "AnyNode":
        takes += " or null"
    example = "true" if current is True else "false" if current is False else current
    return f"{key} takes {takes}" + (f", e.g. {key}={example}" if current is not None else "")


def first_line(message: str, join: bool = False) -> str:
    """Hydra's multi-line messages as one line (its hint lines joined with '; ')."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Config search path", "provider=", "See https"))]
    if not lines:
        return "Hydra refused the command"
    return "; ".join(lines) if join else lines[0]
