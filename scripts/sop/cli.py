"""The `sop` command.

Each subcommand lives in its own module of this package, which provides
``add_parser(subparsers)``; the parser it adds sets ``func(args) -> int``.
Exit codes are the same for the same problem in every subcommand
(:mod:`sop.exits`); a problem the user can act on is one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import exits
from .config import INVENTORY_ENV, ConfigError, find_repo, resolve_inventory

# Modules providing subcommands, in the order `sop --help` lists them.
COMMAND_MODULES = [
    "sop.commands",
    "sop.plan",
    "sop.scaffold",
    "sop.storage",
    "sop.names",
    "sop.backup",
    "sop.dnssec",
]
PACKAGE = "sop-subdomain"
# A reader that closed the output early (`sop storage --json | head`): the
# status of a process ended by SIGPIPE, as other Unix tools give.
BROKEN_PIPE = 128 + 13


class HelpFormatter(argparse.HelpFormatter):
    """Fills each paragraph; keeps a paragraph of indented lines (the exit
    codes) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith("  ") for line in lines[1:]):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PACKAGE)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sop",
        description="Agency subdomains, hosting and email for Kabupaten Sumba Barat Daya.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN, exits.REFUSED,
                            exits.RUN_FAILED)
        + "\n" + exits.code_line(BROKEN_PIPE, "the reader closed the output early (`| head`)")
        + "\n\nEvery command's --help says which of these it gives.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-i", "--inventory",
                        help="inventory folder (default: $SOP_INVENTORY or inventory/lab)")
    parser.add_argument("--repo", metavar="PATH",
                        help="the checkout to act on (default: $SOP_REPO, else the one "
                             "holding the current folder)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
    return parser


def check_inventory(inventory: str | None, repo: str | None = None) -> None:
    """Refuse a folder that is not an inventory before Ansible reads every file
    in it as one (`-i .` printed thousands of warnings, then failed)."""
    path = resolve_inventory(inventory, find_repo(repo, inventory or os.environ.get(INVENTORY_ENV)))
    if path.is_dir() and not (path / "group_vars").is_dir() and not any(
            (path / name).is_file() for name in ("hosts", "hosts.yml", "hosts.yaml", "hosts.ini")):
        raise ConfigError(f"{path} is not an inventory: it has no hosts.yml and no group_vars/ "
                          "(give its folder, e.g. -i inventory/lab)")


def _quiet_stdout() -> None:
    """Send what is still to be written to nowhere: the reader is gone."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .apply import ApplyError
    from .lifecycle import LifecycleError
    from .register import RegisterError

    try:
        check_inventory(args.inventory, args.repo)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except exits.SopError as exc:
        print(f"sop: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ConfigError, ApplyError, RegisterError, LifecycleError) as exc:
        print(f"sop: {exc}", file=sys.stderr)
        return exits.CANNOT_RUN
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print("\nsop: interrupted", file=sys.stderr)
        return exits.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
