"""Settings for the wrapper, read from the Ansible inventory.

The inventory's ``group_vars`` are the one place where the zone, the policy,
addresses and documents' letterhead are set; the wrapper reads them through
Ansible's own inventory and templating code, as a play on ``localhost`` would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = "inventory/lab"
INVENTORY_ENV = "SOP_INVENTORY"
STATE_DIR_ENV = "SOP_STATE_DIR"


class ConfigError(Exception):
    """The inventory is missing or lacks a setting (plain words)."""


@dataclass(frozen=True)
class Settings:
    repo_root: Path
    inventory: Path
    vars: dict

    def get(self, name: str, default=None):
        return self.vars.get(name, default)

    def path(self, name: str) -> Path:
        """A path setting, relative to the repository root unless absolute."""
        value = self.vars.get(name)
        if not value:
            raise ConfigError(f"{self.inventory}: the setting {name} is missing")
        p = Path(value)
        return p if p.is_absolute() else self.repo_root / p

    @property
    def zone(self) -> str:
        return self.vars["sop_zone"]

    @property
    def policy(self) -> dict:
        from sop.validate import inventory_policy  # names the inventory uses are reserved

        return inventory_policy(self.vars)

    @property
    def state_dir(self) -> Path:
        """Where runs, reports and printouts go; ``$SOP_STATE_DIR`` overrides
        the inventory (a CI runner has its own scratch space)."""
        if os.environ.get(STATE_DIR_ENV):
            return Path(os.environ[STATE_DIR_ENV])
        return self.path("sop_state_dir")

    def documents(self) -> dict:
        """The ``settings`` mapping the document templates take."""
        return {
            "letterhead": self.vars.get("sop_letterhead") or {},
            "administrator": self.vars.get("sop_administrator") or {},
            "mail_client": self.vars.get("sop_mail_client") or {},
            "sftp": self.vars.get("sop_sftp") or {},
            "web_scheme": self.vars.get("sop_web_scheme", "https"),
            "templates_dir": self.vars.get("sop_templates_dir"),
        }


def resolve_inventory(inventory: str | os.PathLike | None) -> Path:
    chosen = Path(inventory or os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)
    if not chosen.is_absolute():
        chosen = (Path.cwd() / chosen) if (Path.cwd() / chosen).exists() else REPO_ROOT / chosen
    if not chosen.exists():
        raise ConfigError(f"inventory {chosen} does not exist")
    return chosen


def load_settings(inventory: str | os.PathLike | None = None) -> Settings:
    """Every variable ``localhost`` sees in the inventory, templated."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    inv_path = resolve_inventory(inventory)
    loader = DataLoader()
    loader.set_basedir(str(REPO_ROOT))
    manager = InventoryManager(loader=loader, sources=[str(inv_path)])
    variables = VariableManager(loader=loader, inventory=manager)
    host = manager.get_host("localhost")
    hostvars = dict(variables.get_vars(host=host))
    hostvars["playbook_dir"] = str(REPO_ROOT / "playbooks")
    templar = Templar(loader=loader, variables=hostvars)
    wanted = {k: v for k, v in hostvars.items() if k.startswith("sop_")}
    try:
        rendered = templar.template(wanted)
    except Exception as exc:  # Ansible raises its own error types for bad templates
        raise ConfigError(f"{inv_path}: cannot read the sop_* settings: {exc}") from exc
    if "sop_zone" not in rendered:
        raise ConfigError(f"{inv_path}: sop_zone is not set in the inventory")
    return Settings(repo_root=REPO_ROOT, inventory=inv_path, vars=_plain(rendered))


def _plain(value):
    """Ansible's tagged/lazy containers as plain Python data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)
