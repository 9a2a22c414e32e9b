"""The page ``repro-train --help`` prints, the one a new user reads first.

Generated, not written: the groups and their options are read from conf/, the defaults
from the composed config, and each top-level key's one-line help and range from the
schemas (:mod:`repro.config`'s ``#:`` comments and ``RANGES``), so the page cannot drift
from what the front door accepts. Apart from :mod:`repro.cli.check` because it only
reads conf/ and the schemas and refuses nothing. ``--hydra-help`` stays Hydra's.
"""

from __future__ import annotations

import inspect
import re
import textwrap

from hydra import compose
from omegaconf import DictConfig, OmegaConf

from repro import config as schema
from repro.cli.conf import CONFIG_NAME, GROUP_HELP, PROG, group_options, hydra_context, user_groups
from repro.config import RANGES


def field_docs(cls: type) -> dict[str, str]:
    """A schema field's ``#:`` comment (or trailing ``# ...`` comment) as its one-line help."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for raw in inspect.getsource(cls).splitlines():
        line = raw.strip()
        if line.startswith("#:"):
            pending.append(line[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:\s*[^=]+=[^#]*(?:#\s*(.*))?$", line)
        if field:
            docs[field.group(1)] = " ".join(pending) or (field.group(2) or "")
        pending = []
    return docs


def _range_note(key: str) -> str:
    rng = RANGES.get(key)
    if rng is None or rng.lo is None:
        return ""
    hi = "inf" if rng.hi is None else "2**32" if rng.hi == 2**32 else f"{rng.hi:g}"
    closing = ")" if rng.hi_open or rng.hi is None else "]"
    return f", in {'(' if rng.lo_open else '['}{rng.lo:g}, {hi}{closing}"


def help_text() -> str:
    """The page ``repro-train --help`` prints: what the suite does, the groups and their
    options (read from conf/), the top-level keys (read from the schemas), five commands."""
    with hydra_context() as (_, loader):
        defaults = compose(CONFIG_NAME, return_hydra_config=True)
        choices = dict(defaults.hydra.runtime.choices)
        groups = [(g, group_options(loader, g)) for g in user_groups(loader)]
    width = 100
    out = [
        f"{PROG}: train one network with one pruning method, or a sweep of them (-m), and record every",
        "run in MLflow. The suite re-runs PMP (progressive magnitude pruning, Qureshi et al. 2026) and",
        "its baselines (dense, GMP, SNIP, GraSP, SynFlow, random, LTH/IMP, one-shot) in one training",
        "loop, on the same data, budget and seeds; repro-report turns the runs into tables and verdicts.",
        "",
        f"Usage: {PROG} [-m] [GROUP=OPTION | KEY=VALUE | +profile=NAME ...]",
        "  Runs go to $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory (tracking=none:",
        "  no MLflow); checkpoints to checkpoints/ ($REPRO_CKPT_DIR); Hydra's logs to outputs/ (multirun/",
        "  with -m); data is read from $REPRO_DATA_DIR (data.root). A mistyped command is refused in one",
        "  line before anything is written.",
        "",
        "Groups (GROUP=OPTION; * = default):",
    ]
    for group, options in groups:
        shown = _options_summary(options, choices.get(group))
        about = GROUP_HELP.get(group)
        out += textwrap.wrap(f"{about}: {shown}" if about else shown, width=width, initial_indent=f"  {group:<16}",
                             subsequent_indent=" " * 18)
    out += ["", "Keys (KEY=VALUE, shown with its default; every numeric key has a stated range, repro/config.py RANGES):"]
    docs = field_docs(schema.Config)
    scalars = [(k, v) for k, v in defaults.items() if k != "hydra" and not isinstance(v, DictConfig)]
    nodes = [(k, v) for k, v in defaults.items() if k != "hydra" and isinstance(v, DictConfig)]
    for name, value in scalars + nodes:
        if isinstance(value, DictConfig):
            cls = OmegaConf.get_type(value)
            about = (inspect.getdoc(cls) or "").splitlines()[0] if cls not in (dict, None) else ""
            about = about[:1].lower() + about[1:]
            keys = ", ".join(str(k) for k in value.keys())
            if name == "pruner":
                keys += ", + the method's own knobs (conf/pruner/NAME.yaml)"
            out += textwrap.wrap(f"{about.rstrip('.')}: {keys}", width=width, initial_indent=f"  {name + '.*':<20}",
                                 subsequent_indent=" " * 22)
        else:
            shown = str(value).lower() if isinstance(value, bool) else value
            out += textwrap.wrap(f"{docs.get(name, '')}{_range_note(name)}", width=width,
                                 initial_indent=f"  {f'{name}={shown}':<20}", subsequent_indent=" " * 22)
    out += [
        "",
        "Examples:",
        f"  {PROG} model=lenet300 data=mnist pruner=pmp sparsity=0.9 trainer.epochs=2  # one run",
        f"  {PROG} -m pruner=pmp,gmp,snip sparsity=0.5,0.9 seed=0,1,2        # a sweep: one run per job",
        f"  {PROG} -m +profile=quick        # a profile: the runs of repro-report --profile quick",
        f"  {PROG} experiment=pmp_resnet18  # a preset: the paper's ResNet-18 setting",
        f"  {PROG} -m hydra/launcher=submitit_local pruner=pmp,gmp sparsity=0.9  # jobs via a launcher",
        "",
        "More: --cfg job prints the composed config; --hydra-help is Hydra's own help; README.md has",
        "the methods, profiles and the report (repro-report --help).",
    ]
    return "\n".join(out)


def _options_summary(options: list[str], default: str | None) -> str:
    """Options as a comma list, the default starred; nested options counted per subgroup."""
    flat = [f"{o}*" if o == default else o for o in options if "/" not in o]
    nested: dict[str, int] = {}
    for o in options:
        if "/" in o:
            nested[o.split("/")[0]] = nested.get(o.split("/")[0], 0) + 1
    flat += [f"{sub}/*[{n}]" for sub, n in nested.items()]
    return ", ".join(flat)
