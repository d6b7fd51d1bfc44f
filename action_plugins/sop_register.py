"""Action plugin: keep the credential register (SOP step 5) on the controller.

Adds a password for every account that has none, writes the encrypted register
atomically *before* any account is created, and returns only the hashes (the
task must be ``no_log``). Existing passwords never change. Lifecycle (issue 9):
notes the day accounts are archived, clears it for accounts restored within
the undo window, and forgets purged accounts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:
    from sop.lifecycle import LifecycleError, today_from
    from sop.register import Register, RegisterError, vault_password
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from sop.lifecycle import LifecycleError, today_from
    from sop.register import Register, RegisterError, vault_password

DOCUMENTATION = r"""
name: sop_register
short_description: Ensure every account has a password in the encrypted register
options:
  path: {description: Register file (ansible-vault encrypted YAML)., type: path, required: true}
  password_file: {description: Vault password file (else $SOP_VAULT_PASSWORD[_FILE])., type: path}
  accounts: {description: Accounts from the sop_accounts filter., type: list, default: []}
  keys: {description: "Server keys (name, algorithm): the DNS TSIG key.", type: list, default: []}
  archive: {description: Account ids archived this run (dated today)., type: list, default: []}
  restore: {description: Archived account ids asked for again., type: list, default: []}
  forget: {description: Purged account ids to drop., type: list, default: []}
  today: {description: "The lifecycle's today (YYYY-MM-DD; empty: today).", type: str, default: ""}
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("path", "password_file", "accounts", "keys", "archive", "restore",
                             "forget", "today"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "path": {"type": "path", "required": True},
                "password_file": {"type": "path"},
                "accounts": {"type": "list", "elements": "dict", "default": []},
                "keys": {"type": "list", "elements": "dict", "default": []},
                "archive": {"type": "list", "elements": "str", "default": []},
                "restore": {"type": "list", "elements": "str", "default": []},
                "forget": {"type": "list", "elements": "str", "default": []},
                "today": {"type": "str", "default": ""},
            }
        )
        try:
            register = Register(args["path"], vault_password(args.get("password_file")))
            today = today_from(args["today"])
            added = register.ensure(args["accounts"], today)
            added_keys = register.ensure_keys(args["keys"], today)
            archived = register.mark_archived(args["archive"], today)
            restored = register.restore(args["restore"])
            forgotten = register.forget(args["forget"])
            lifecycle = archived or restored or forgotten or register.changed_agency
            if (added or added_keys or lifecycle) and not self._task.check_mode:
                register.save()
        except (RegisterError, LifecycleError) as exc:
            raise AnsibleActionFail(str(exc)) from exc
        hashes = register.hashes()
        if self._task.check_mode:
            # Nothing was written: new accounts get a hash that logs nobody in.
            for account_id in added:
                hashes[account_id] = "!"
        server_keys = {
            k["name"]: {"name": k["name"], "algorithm": register.keys[k["name"]]["algorithm"],
                        "secret": register.keys[k["name"]]["secret"]}
            for k in args["keys"]
        }
        result.update(changed=bool(added or added_keys or lifecycle), added=added, hashes=hashes,
                      added_keys=added_keys, server_keys=server_keys, archived=archived,
                      restored=restored, forgotten=forgotten)
        return result
