"""``repro-train``'s front door: every mistake a user can type is refused before anything
is written, in one ``error:`` line that names the fix, with exit code 2.

Before handing over to Hydra (:func:`repro.train.main`, unchanged) :func:`gate` checks every
job the command would run; torch and MLflow are not even imported until it has passed.
``repro-train --help`` prints a page generated from ``conf/`` and the schemas;
``--hydra-help`` stays Hydra's.

One job per module (``repro/cli.py`` grew past the house limit as one file):

- :mod:`repro.cli.check`: parsing, sweep expansion, composing and checking each job, and
  the one-line refusals with their "did you mean" suggestions;
- :mod:`repro.cli.help`: the ``--help`` page;
- :mod:`repro.cli.conf`: conf/, its groups and options, and the Hydra session both read;
- here: the entry point (``repro-train = "repro.cli:main"``), :func:`gate` (which
  ``repro.train``'s ``__main__`` uses) and :func:`handover`, and the names other code and
  the tests import from ``repro.cli``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from repro.cli.check import (
    BASIC_SWEEPER,
    Refused,
    check,
    first_line,
    parse_args,
    parse_override,
    type_fix,
)
from repro.cli.conf import CONF_DIR, CONFIG_NAME, GROUP_HELP, PROG, group_options, hydra_context, user_groups
from repro.cli.help import field_docs, help_text

__all__ = [
    "BASIC_SWEEPER", "CONFIG_NAME", "CONF_DIR", "EXIT_USAGE", "GROUP_HELP", "PROG", "Refused", "check", "field_docs",
    "first_line", "gate", "group_options", "handover", "help_text", "hydra_context", "main", "parse_args",
    "parse_override", "type_fix", "user_groups", "wants_help",
]

#: the exit status of a refused command (argparse's convention for usage errors)
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> None:
    """``repro-train``: print the help page, or check the command and hand it to Hydra."""
    args = list(sys.argv[1:] if argv is None else argv)
    if gate(args):
        handover(args)


def gate(args: list[str]) -> bool:
    """Print the help page (False: nothing to run), refuse a bad command (exit 2), or pass it (True)."""
    if wants_help(args):
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:  # `repro-train --help | head` closed the pipe: the reader has what it wanted
            sys.stdout = None
        return False
    try:
        check(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    return True


def handover(argv: list[str]) -> None:
    """Run the checked command through Hydra (``repro.train.main`` reads ``sys.argv``)."""
    from repro import train  # torch, MLflow: only once the command has passed

    sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else PROG, *argv]
    train.main()


def wants_help(argv: Sequence[str]) -> bool:
    """``-h``/``--help`` anywhere before ``--`` asks for this module's page (not Hydra's)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in ("-h", "--help"):
            return True
    return False
