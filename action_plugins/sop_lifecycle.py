"""Action plugin: decide the lifecycle of every agency for this run (issue 9).

Reads the encrypted register (read-only) on the controller and returns, with
no secret in it: the requests to serve (each with its effective status), the
folders the mail and web hosts archive, restore and purge, the register ids to
mark, and the report's lifecycle section. Refuses a run that would remove
more than the inventory's share of the agencies unless it is allowed: the run
then stops before any change.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:
    from sop import lifecycle
    from sop.register import Register, RegisterError, vault_password
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from sop import lifecycle
    from sop.register import Register, RegisterError, vault_password

DOCUMENTATION = r"""
name: sop_lifecycle
short_description: Decide suspension, archiving, restoring and purging of accounts
options:
  path: {description: Register file (ansible-vault encrypted YAML)., type: path, required: true}
  password_file: {description: Vault password file (else $SOP_VAULT_PASSWORD[_FILE])., type: path}
  requests: {description: Validated requests (the sop_requests filter)., type: list, required: true}
  settings:
    description: >-
      retention_days, event_warning_days, event_archive_after_days,
      removal_threshold_percent (the inventory's sop_lifecycle).
    type: dict
    default: {}
  today:
    description: "The lifecycle's today (YYYY-MM-DD); empty: today in the regency."
    type: str
  allow_large_removal: {description: Go ahead although many agencies are removed., type: bool}
  mail_root: {description: Root of the Maildirs., type: str, required: true}
  web_root: {description: Root of the sites., type: str, required: true}
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "path": {"type": "path", "required": True},
                "password_file": {"type": "path"},
                "requests": {"type": "list", "elements": "dict", "required": True},
                "settings": {"type": "dict", "default": {}},
                "today": {"type": "str", "default": ""},
                "allow_large_removal": {"type": "bool", "default": False},
                "mail_root": {"type": "str", "required": True},
                "web_root": {"type": "str", "required": True},
            }
        )
        try:
            accounts = {}
            if Path(args["path"]).exists():
                register = Register(args["path"], vault_password(args.get("password_file")))
                # Only what the decisions need: never a password or a hash.
                accounts = {
                    k: {f: v[f] for f in ("username", "kind", "subdomain", "archived", "agency")
                       if f in v}
                    for k, v in register.accounts.items()
                }
            cfg = lifecycle.Settings.from_mapping(args["settings"])
            today = lifecycle.today_from(args["today"])
            decision = lifecycle.decide(args["requests"], accounts, today, cfg,
                                        allow_large_removal=args["allow_large_removal"])
            actions = lifecycle.storage_actions(
                decision, accounts, today,
                {"mail_root": args["mail_root"], "web_root": args["web_root"]})
        except (RegisterError, lifecycle.LifecycleError) as exc:
            raise AnsibleActionFail(str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise AnsibleActionFail(f"lifecycle settings: {exc}") from exc
        result.update(
            changed=False,
            today=today.isoformat(),
            provision=decision["provision"],
            suspended=decision["suspended"],
            archive=decision["archive"],
            restore=decision["restore"],
            purge=decision["purge"],
            storage=actions,
            summary=lifecycle.summary(decision, accounts, today, cfg),
        )
        return result
