"""Core subcommands: validate, apply, print, reset-password."""

from __future__ import annotations

import sys
from pathlib import Path

from .config import ConfigError, load_settings


def _cmd_validate(args) -> int:
    from .validate import validate_paths

    settings = load_settings(args.inventory)
    paths = args.paths or [Path("requests")]
    try:
        requests, problems = validate_paths(paths, settings.policy)
    except ValueError as exc:  # the inventory's sop_policy is wrong, not a request: exit 2
        raise ConfigError(f"{settings.inventory}: {exc} (sop_policy)") from exc
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
        return 1
    print(f"{len(requests)} request(s) valid.")
    return 0


def _cmd_apply(args) -> int:
    from .apply import apply

    settings = load_settings(args.inventory)
    record = apply(settings, overcommit=args.overcommit, check=args.check,
                   printouts=not args.no_printouts,
                   allow_large_removal=args.allow_large_removal)
    for path in record.get("printouts", []):
        print(f"Dokumen cetak (printout): {path}")
    for kind, path in record["report"].items():
        print(f"Laporan ({kind}): {path}")
    if record["status"] != "ok":
        print(f"GAGAL: {record['failure']}", file=sys.stderr)
        return 1
    changed = sum(record["changed"].values())
    print(f"Selesai: {changed} perubahan, {len(record['requests'])} permohonan.")
    return 0


def _cmd_print(args) -> int:
    from .apply import print_requests

    settings = load_settings(args.inventory)
    for path in print_requests(settings, args.requests):
        print(path)
    return 0


def _cmd_reset_password(args) -> int:
    from .apply import apply_lock
    from .model import hosting_account_id
    from .register import Register, vault_password

    settings = load_settings(args.inventory)
    account = args.account if "@" in args.account or ":" in args.account \
        else hosting_account_id(args.account)
    # Read, changed and written under the apply lock: an apply running
    # meanwhile would save its own copy of the register over the new password.
    with apply_lock(settings.state_dir):
        register = Register(settings.path("sop_register_file"),
                            vault_password(settings.path("sop_vault_password_file")))
        register.reset(account)
        register.save()
    print(f"New password issued for {account}; run `sop apply` to put it on the servers "
          "(the printout is then made again).")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check request files (default folder: requests/)")
    p.add_argument("paths", nargs="*", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("apply", help="run the SOP: storage, accounts, register, DNS, "
                                     "printouts, report")
    p.add_argument("--overcommit", action="store_true",
                   help="go ahead although storage would fall below the reserve (recorded)")
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--no-printouts", action="store_true",
                   help="leave the credential sheets for `sop print` (scheduled CI runs)")
    p.add_argument("--allow-large-removal", action="store_true",
                   help="go ahead although the run archives more agencies than the inventory's "
                        "sop_lifecycle.removal_threshold_percent (deleted request files)")
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser("print", help="credential printout (PDF) of requests")
    p.add_argument("requests", nargs="*",
                   help="subdomain labels (default: every request with a sheet due)")
    p.set_defaults(func=_cmd_print)

    p = sub.add_parser("reset-password", help="issue a new password for an account")
    p.add_argument("account", help="mailbox address, or a subdomain label for its hosting account")
    p.set_defaults(func=_cmd_reset_password)
