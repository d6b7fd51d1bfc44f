"""Exit codes of `sop`, the same for the same problem in every subcommand.

Every command's ``--help`` lists those it can give (:func:`epilog`).
"""

from __future__ import annotations

import textwrap

OK = 0
INVALID = 1  # the request files have problems: nothing was changed or written
CANNOT_RUN = 2  # the inventory or its settings, the register, a lock, the command line
REFUSED = 3  # a large change, not allowed (sop plan)
RUN_FAILED = 4  # the run stopped: a server, the storage check or a post-check (sop apply)
INTERRUPTED = 130  # Ctrl-C

MEANING = {
    OK: "done",
    INVALID: "the request files have problems (each is listed); nothing was changed",
    CANNOT_RUN: "cannot run: the inventory or its settings, the register, another run "
                "holding the lock, or the command line",
    REFUSED: "refused as a large change (run again with --allow-large-change if intended)",
    RUN_FAILED: "the run failed: on a server, in the storage check or in a post-check "
                "(the report says which)",
}


class SopError(Exception):
    """A problem the user can act on, told in plain words, without a traceback."""

    exit_code = CANNOT_RUN


class RequestsInvalid(SopError):
    """The request files have problems (they were listed, or the message says where)."""

    exit_code = INVALID


def code_line(code: int, meaning: str) -> str:
    """``"  2  cannot run: ..."``, wrapped under its meaning at 78 columns."""
    return textwrap.fill(meaning, width=78, initial_indent=f"  {code:<3d}  ",
                         subsequent_indent=" " * 7)


def epilog(*codes: int) -> str:
    """The "exit codes" paragraph of a command's --help."""
    return "\n".join(["exit codes:", *(code_line(code, MEANING[code]) for code in codes)])
