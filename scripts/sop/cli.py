"""The `sop` command.

Each subcommand lives in its own module of this package, which provides
``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

# Modules providing subcommands, in the order `sop --help` lists them.
COMMAND_MODULES = [
    "sop.commands",
    "sop.plan",
    "sop.scaffold",
    "sop.storage",
    "sop.names",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sop",
        description="Agency subdomains, hosting and email for Kabupaten Sumba Barat Daya.",
    )
    parser.add_argument("-i", "--inventory",
                        help="inventory folder (default: $SOP_INVENTORY or inventory/lab)")
    parser.add_argument("--repo", metavar="PATH",
                        help="the checkout to act on (default: $SOP_REPO, else the one "
                             "holding the current folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .apply import ApplyError
    from .register import RegisterError

    try:
        return args.func(args)
    except (ConfigError, ApplyError, RegisterError) as exc:
        print(f"sop: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
