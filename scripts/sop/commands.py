"""Core subcommands: validate, apply, print, reset-password."""

from __future__ import annotations

import sys
from pathlib import Path

from . import exits
from .config import ConfigError, load_settings


def _cmd_validate(args) -> int:
    from .validate import validate_paths

    settings = load_settings(args.inventory, args.repo)
    # Without paths: the inventory's request folder (requests/ for production).
    paths = args.paths or [settings.path("sop_requests_dir")]
    try:
        requests, problems = validate_paths(paths, settings.policy)
    except ValueError as exc:  # the inventory's sop_policy is wrong, not a request: exit 2
        raise ConfigError(f"{settings.inventory}: {exc} (sop_policy)") from exc
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
        return exits.INVALID
    if not requests:
        print(f"No request files in {', '.join(str(p) for p in paths)}: nothing to check "
              "(an empty set is valid).")
        return exits.OK
    print(f"{len(requests)} request(s) valid.")
    return exits.OK


def _cmd_apply(args) -> int:
    from .apply import apply

    settings = load_settings(args.inventory, args.repo)
    record = apply(settings, overcommit=args.overcommit, check=args.check,
                   printouts=not args.no_printouts,
                   allow_large_removal=args.allow_large_removal, wait=args.wait)
    for path in record.get("printouts", []):
        print(f"Dokumen cetak (printout): {path}")
    for kind, path in record["report"].items():
        print(f"Laporan ({kind}): {path}")
    if record["status"] != "ok":
        print(f"GAGAL: {record['failure']}", file=sys.stderr)
        return exits.RUN_FAILED
    changed = sum(record["changed"].values())
    print(f"Selesai: {changed} perubahan, {len(record['requests'])} permohonan.")
    return exits.OK


def _cmd_print(args) -> int:
    from .apply import print_requests

    settings = load_settings(args.inventory, args.repo)
    for path in print_requests(settings, args.requests):
        print(path)
    return exits.OK


def _cmd_reset_password(args) -> int:
    from .apply import settings_lock
    from .model import hosting_account_id
    from .register import Register, vault_password

    settings = load_settings(args.inventory, args.repo)
    account = args.account if "@" in args.account or ":" in args.account \
        else hosting_account_id(args.account)
    # Read, changed and written under the apply lock: an apply running
    # meanwhile would save its own copy of the register over the new password.
    with settings_lock(settings):
        register = Register(settings.path("sop_register_file"),
                            vault_password(settings.path("sop_vault_password_file")))
        register.reset(account)
        register.save()
    print(f"New password issued for {account}; run `sop apply` to put it on the servers "
          "(the printout is then made again).")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate", help="check request files (default: the inventory's request folder)",
        description="Check request files against the request format and the inventory's "
                    "policy (sop_policy), as one set: every problem is one line naming the "
                    "file, the line and the field. Nothing is changed.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN))
    p.add_argument("paths", nargs="*", type=Path,
                   help="request files or folders (default: the inventory's sop_requests_dir)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "apply", help="run the SOP: storage, accounts, register, DNS, printouts, report",
        description="Run the SOP for every request of the inventory: check the storage "
                    "(step 3), create the accounts (4), record them in the encrypted register "
                    "(5), add the names to the DNS (6), print the credential sheets (7) and "
                    "write the run report (8). One apply at a time. The request files are "
                    "validated first; with a problem nothing is changed.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN, exits.RUN_FAILED))
    p.add_argument("--overcommit", action="store_true",
                   help="go ahead although storage would fall below the reserve (recorded)")
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--no-printouts", action="store_true",
                   help="leave the credential sheets for `sop print` (scheduled CI runs)")
    p.add_argument("--allow-large-removal", action="store_true",
                   help="go ahead although the run archives more agencies than the inventory's "
                        "sop_lifecycle.removal_threshold_percent (deleted request files)")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait up to SECONDS for another apply to finish instead of stopping "
                        "at once (the Apply workflow waits)")
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser(
        "print", help="credential printout (PDF) of requests",
        description="Print the credential sheet and handover receipt (SOP steps 7 and 9) of "
                    "the named requests, or of every request whose sheet is due (new or reset "
                    "passwords); the PDFs go to <state>/printouts, readable by the owner only.",
        epilog=exits.epilog(exits.OK, exits.INVALID, exits.CANNOT_RUN))
    p.add_argument("requests", nargs="*",
                   help="subdomain labels (default: every request with a sheet due)")
    p.set_defaults(func=_cmd_print)

    p = sub.add_parser(
        "reset-password", help="issue a new password for an account",
        description="Issue a new password for a mailbox, a hosting account or a site's "
                    "database user in the encrypted register; the next `sop apply` puts it on "
                    "the servers and prints the sheet again.",
        epilog=exits.epilog(exits.OK, exits.CANNOT_RUN))
    p.add_argument("account", help="mailbox address, a subdomain label for its hosting "
                                   "account, or database:<label> for its database user")
    p.set_defaults(func=_cmd_reset_password)
