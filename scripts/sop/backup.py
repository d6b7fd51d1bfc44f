"""`sop backup run|status` and `sop restore mailbox|site|agency` (issue 19).

The backups themselves are the role ``backup``'s (borg, append-only, to the
inventory's backup host); these commands run its script, ``sop-backup``, on
the source hosts through ``playbooks/backup-ops.yml`` and read what it says:
per host the time and size of the last good backup, flagged when older than
``sop_backup.max_age_hours`` (default 26) or when the last attempt failed.

A restore extracts only the named paths (a mailbox's folder, a site's home,
or both and the DKIM key of one agency) from the newest archive on or before
``--at``, in place, with their owners: nothing of another agency is written.
Each restore is recorded under ``<records>/restores/`` (``sop_records_dir``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys

from . import exits
from .backup_status import print_rows, status_rows_of
from .config import ConfigError, Settings, load_settings, runner_env

PLAYBOOK = "backup-ops.yml"
TASK = "Run sop-backup"
# What may name a mailbox or a label: nothing that climbs out of its folder.
_LOCAL = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]*[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")


class BackupFailed(exits.SopError):
    exit_code = exits.RUN_FAILED


def _run_ops(settings: Settings, action: str, args: list[str] | None = None,
             hosts: str = "all", paths: dict | None = None) -> dict[str, dict]:
    """`sop-backup ACTION` on the source hosts; per host: rc, stdout, stderr."""
    import ansible_runner

    from .apply import _vault_password_file

    results: dict[str, dict] = {}

    def handle(event: dict) -> bool:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("task") == TASK:
            res = data.get("res") or {}
            results[data["host"]] = {"rc": res.get("rc", 1), "stdout": res.get("stdout", ""),
                                     "stderr": res.get("stderr", "") or res.get("msg", "")}
        elif event.get("event") == "runner_on_unreachable":
            results[data.get("host", "?")] = {"rc": 255, "stdout": "",
                                              "stderr": "unreachable: "
                                              + str((data.get("res") or {}).get("msg", ""))}
        return False  # nothing of the run is kept beyond the run folder

    env = runner_env(settings)
    run_dir = settings.state_dir / "runs" / f"backup-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    from .register import VAULT_FILE_ENV

    with _vault_password_file(settings, run_dir) as password_file:
        env[VAULT_FILE_ENV] = str(password_file)
        ansible_runner.run(
            private_data_dir=str(run_dir), project_dir=str(settings.repo_root),
            playbook=str(settings.repo_root / "playbooks" / PLAYBOOK),
            inventory=str(settings.inventory), envvars=env,
            extravars={"sop_backup_action": action, "sop_backup_args": args or [],
                       "sop_backup_hosts": hosts, "sop_backup_paths": paths or {}},
            event_handler=handle, quiet=True, suppress_env_files=True,
            suppress_ansible_output=True)
    return results


def status_rows(settings: Settings) -> list[dict]:
    return status_rows_of(settings, _run_ops(settings, "status"))


def _cmd_run(args) -> int:
    settings = load_settings(args.inventory, args.repo)
    results = _run_ops(settings, "run")
    if not results:
        raise ConfigError(f"{settings.inventory}: no host has backups (a `backup` group and "
                          "a `sop apply` first)")
    for host, res in sorted(results.items()):
        words = (res["stdout"] or res["stderr"]).strip().splitlines()
        print(f"{host}: {words[-1] if words else res['rc']}", file=sys.stdout if res["rc"] == 0
              else sys.stderr)
    rows = status_rows(settings)
    print_rows(rows)
    failed = sorted(h for h, r in results.items() if r["rc"] != 0)
    if failed:
        raise BackupFailed(f"backup failed on {', '.join(failed)}")
    return exits.OK


def _cmd_status(args) -> int:
    settings = load_settings(args.inventory, args.repo)
    rows = status_rows(settings)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_rows(rows)
    return exits.RUN_FAILED if any(r["problems"] for r in rows) else exits.OK


def restore_paths(settings: Settings, kind: str, name: str) -> dict[str, list[str]]:
    """The paths a restore writes, per group (mail, web): only what was named."""
    mail_root = str(settings.get("sop_mail_storage_path", "/var/mail/vhosts")).rstrip("/")
    web_root = str(settings.get("sop_web_storage_path", "/srv/www")).rstrip("/")
    name = name.strip().lower()
    if kind == "mailbox":
        local, _, domain = name.partition("@")
        if not (_LOCAL.match(local) and _DOMAIN.match(domain)) or ".." in local:
            raise ConfigError(f"{name!r} is not a mailbox address")
        return {"mail": [f"{mail_root}/{domain}/{local}"], "web": []}
    if not _LABEL.match(name):
        raise ConfigError(f"{name!r} is not a subdomain label")
    if kind == "site":
        return {"mail": [], "web": [f"{web_root}/{name}"]}
    # agency: its mailboxes and DKIM key (from its request), and its site.
    from .validate import validate_paths

    requests, _ = validate_paths([settings.path("sop_requests_dir")], settings.policy)
    req = next((r for r in requests if r["subdomain"] == name), None)
    if req is None:
        raise ConfigError(f"no request for the agency {name!r} in "
                          f"{settings.path('sop_requests_dir')}")
    mail, web = [], []
    for box in (req.get("mail") or {}).get("mailboxes", []):
        local, _, domain = box["address"].lower().partition("@")
        mail.append(f"{mail_root}/{domain}/{local}")
    domains = {b["address"].lower().partition("@")[2]
               for b in (req.get("mail") or {}).get("mailboxes", [])}
    mail += [f"/etc/opendkim/keys/{d}" for d in sorted(domains) if d != settings.zone]
    if req.get("hosting"):
        web.append(f"{web_root}/{name}")
    return {"mail": mail, "web": web}


def _cmd_restore(args) -> int:
    settings = load_settings(args.inventory, args.repo)
    paths = restore_paths(settings, args.kind, args.name)
    extra = ["--at", args.at] if args.at else []
    if args.at:
        try:
            dt.date.fromisoformat(args.at[:10])
        except ValueError as exc:
            raise ConfigError(f"--at {args.at!r}: give YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    groups = ":".join(g for g in ("mail", "web") if paths[g])
    results = _run_ops(settings, "restore", extra, hosts=groups, paths=paths)
    record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "kind": args.kind, "name": args.name, "at": args.at, "paths": paths,
              "hosts": {}}
    for host, res in sorted(results.items()):
        try:
            done = json.loads(res["stdout"].strip().splitlines()[-1]) if res["rc"] == 0 else None
        except (ValueError, IndexError):
            done = None
        record["hosts"][host] = done or {"failed": (res["stderr"] or res["stdout"]).strip()}
        if done:
            print(f"{host}: restored {', '.join(done['paths'])} from {done['archive']} "
                  f"({done['time'][:19]} UTC)")
        else:
            print(f"{host}: restore FAILED: {record['hosts'][host]['failed']}", file=sys.stderr)
    # Beside the other records (not among the run reports, which are read
    # newest first); the controller's backup covers them.
    folder = settings.path("sop_records_dir") / "restores"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{args.kind}.json").write_text(
        json.dumps(record, indent=1) + "\n")
    if not results:
        raise BackupFailed(f"no host with backups in the group(s) {groups}")
    if any(r["rc"] != 0 for r in results.values()):
        raise BackupFailed(f"restore of {args.kind} {args.name} failed")
    return exits.OK


def add_parser(sub) -> None:
    p = sub.add_parser(
        "backup", help="run the backups now, or show each host's last good backup",
        description="Backups (borg, append-only, to the inventory's backup host): `run` backs "
                    "every source host up now (as its nightly timer does); `status` shows per "
                    "host the time and size of the last good backup, flagged when older than "
                    "sop_backup.max_age_hours (26) or when the last attempt failed.",
        epilog=exits.epilog(exits.OK, exits.CANNOT_RUN, exits.RUN_FAILED))
    bsub = p.add_subparsers(dest="backup_command", required=True, metavar="ACTION")
    q = bsub.add_parser("run", help="back every source host up now")
    q.set_defaults(func=_cmd_run)
    q = bsub.add_parser("status", help="last good backup per host (exit 4 when one is flagged)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "restore", help="restore a mailbox, a site or an agency from the backups",
        description="Put back, in place and with their owners, only the named data from the "
                    "newest backup on or before --at: a mailbox (its folder), a site (its "
                    "home), or an agency (its mailboxes, DKIM key and site). Files of other "
                    "agencies are not written. Recorded under <records>/restores/ "
                    "(sop_records_dir).",
        epilog=exits.epilog(exits.OK, exits.CANNOT_RUN, exits.RUN_FAILED))
    p.add_argument("kind", choices=["mailbox", "site", "agency"])
    p.add_argument("name", help="mailbox address, or the agency's subdomain label")
    p.add_argument("--at", metavar="DATE",
                   help="YYYY-MM-DD (the whole day, UTC) or an ISO date and time: the newest "
                        "backup on or before it (default: the newest)")
    p.set_defaults(func=_cmd_restore)
