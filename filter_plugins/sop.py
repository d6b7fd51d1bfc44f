"""Filters over the project's Python package (``scripts/sop``).

Thin wrappers: validation and desired-state derivation live in the package,
so `sop validate`, the pull-request check and the playbook never disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    from sop import model
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from sop import model

# Ansible imports every filter plugin in each task's worker process, whether
# the task uses a filter from it or not: the validator (jsonschema, ~60 ms)
# and the storage module are imported only by the filters that need them.


def sop_requests(path: str, policy: dict | None = None) -> list[dict]:
    """Load and validate every request under ``path``; fail with every problem."""
    from sop import validate

    requests, problems = validate.validate_paths([path], policy)
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise AnsibleFilterError(
            f"{len(problems)} problem(s) in the requests; nothing was changed:\n{lines}"
        )
    return requests


def sop_request_policy(variables) -> dict:
    """The request policy of the inventory (``hostvars.localhost``): sop_policy, the
    zone, and the names and addresses the inventory itself uses, reserved."""
    from sop import validate

    return validate.inventory_policy(variables)


def sop_parse_size(text: str) -> int:
    from sop import validate

    try:
        return validate.parse_size(str(text))
    except ValueError as exc:
        raise AnsibleFilterError(f"not a size: {text!r}") from exc


def sop_mail_auth_records(requests: list[dict], settings: dict,
                          dkim_keys: list[dict] | None = None) -> list[dict]:
    try:
        return model.mail_auth_records(requests, settings, dkim_keys or [])
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def sop_mail_client_records(requests: list[dict], settings: dict) -> list[dict]:
    try:
        return model.mail_client_records(requests, settings)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def sop_mta_sts_policy(settings: dict) -> dict:
    try:
        return model.mta_sts_policy(settings)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def sop_storage_paths(requests: list[dict], mail_path: str, web_path: str) -> list[dict]:
    from sop import storage

    return storage.storage_paths(requests, mail_path, web_path)


class FilterModule:
    def filters(self):
        return {
            "sop_requests": sop_requests,
            "sop_request_policy": sop_request_policy,
            "sop_accounts": model.accounts,
            "sop_mail_data": model.mail_data,
            "sop_mail_domains": model.mail_domains,
            "sop_zone_records": model.zone_records,
            "sop_mail_auth_records": sop_mail_auth_records,
            "sop_mail_client_records": sop_mail_client_records,
            "sop_mail_client_names": model.mail_client_names,
            "sop_mta_sts_policy": sop_mta_sts_policy,
            "sop_vhosts": model.vhosts,
            "sop_hosting_accounts": model.hosting_accounts,
            "sop_php_pools": model.php_pools,
            "sop_databases": model.databases,
            "sop_database_names": model.database_names,
            "sop_storage_demand": model.storage_demand,
            "sop_storage_paths": sop_storage_paths,
            "sop_parse_size": sop_parse_size,
        }
