"""Settings for the wrapper, read from the Ansible inventory.

The inventory's ``group_vars`` are the one place where the zone, the policy,
addresses and documents' letterhead are set; the wrapper reads them through
Ansible's own inventory and templating code, as a play on ``localhost`` would.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# The checkout this code came from: only the default of `find_repo` when the
# current folder is inside it; the repository acted on is always `find_repo`'s.
CODE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = "inventory/lab"
INVENTORY_ENV = "SOP_INVENTORY"
STATE_DIR_ENV = "SOP_STATE_DIR"
REPO_ENV = "SOP_REPO"
# What makes a folder a checkout of this repository.
REPO_MARKERS = ("ansible.cfg", "playbooks/site.yml")


class ConfigError(Exception):
    """The inventory is missing or lacks a setting (plain words)."""


@dataclass(frozen=True)
class Controller:
    """A host of the inventory's ``controller`` group: the one machine that
    applies to the servers and keeps the state (register, records, reports)."""

    name: str
    address: str


@dataclass(frozen=True)
class Settings:
    repo_root: Path
    inventory: Path
    vars: dict
    controllers: tuple[Controller, ...] = ()

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

    @property
    def lock_file(self) -> Path:
        """The one lock of every command that writes the register: the
        inventory's ``sop_apply_lock_file`` (production: a fixed path on the
        controller, whatever the checkout or state folder), else the state
        folder's ``apply.lock``."""
        if self.vars.get("sop_apply_lock_file"):
            return self.path("sop_apply_lock_file")
        return self.state_dir / "apply.lock"

    def documents(self) -> dict:
        """The ``settings`` mapping the document templates take."""
        return {
            "letterhead": self.vars.get("sop_letterhead") or {},
            "administrator": self.vars.get("sop_administrator") or {},
            "head_of_division": self.vars.get("sop_head_of_division") or {},
            "mail_client": self.vars.get("sop_mail_client") or {},
            "webmail": self.vars.get("sop_webmail") or {},
            "sftp": self.vars.get("sop_sftp") or {},
            "web_scheme": self.vars.get("sop_web_scheme", "https"),
            "templates_dir": self.vars.get("sop_templates_dir"),
        }


def _is_checkout(path: Path) -> bool:
    return all((path / marker).is_file() for marker in REPO_MARKERS)


def find_repo(repo: str | os.PathLike | None = None,
              inventory: str | os.PathLike | None = None) -> Path:
    """The checkout `sop` acts on: ``repo`` (``--repo``), else ``$SOP_REPO``,
    else the one holding the current folder, else the one holding an
    inventory given by its absolute path. Never another one silently."""
    given = repo or os.environ.get(REPO_ENV)
    if given:
        path = Path(given).resolve()
        if not _is_checkout(path):
            raise ConfigError(f"{path} is not a checkout of this repository "
                              f"(it lacks {' and '.join(REPO_MARKERS)})")
        return path
    here = Path.cwd().resolve()
    starts = [here]
    if inventory and Path(inventory).is_absolute():
        starts.append(Path(inventory).resolve())
    for start in starts:
        for folder in (start, *start.parents):
            if _is_checkout(folder):
                return folder
    raise ConfigError(f"{here} is not inside a checkout of this repository (no "
                      f"{REPO_MARKERS[1]} here or above): cd into the checkout, "
                      "or give --repo PATH")


def resolve_inventory(inventory: str | os.PathLike | None, repo_root: Path | None = None) -> Path:
    root = repo_root or find_repo()
    chosen = Path(inventory or os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)
    if not chosen.is_absolute():
        chosen = (Path.cwd() / chosen) if (Path.cwd() / chosen).exists() else root / chosen
    if not chosen.exists():
        raise ConfigError(f"inventory {chosen} does not exist")
    return chosen


def _secretless_loader():
    """Ansible's loader, minus the inventory's vault-encrypted files.

    The wrapper reads settings, never secrets: an encrypted
    ``group_vars/all/vault.yml`` is left to ``ansible-playbook`` (which gets
    the vault password), so `sop validate` and `sop plan` work without one,
    as the pull-request check runs them."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import is_encrypted_file

    class SecretlessLoader(DataLoader):
        def load_from_file(self, file_name, *args, **kwargs):
            with open(file_name, "rb") as handle:
                if is_encrypted_file(handle):
                    return {}
            return super().load_from_file(file_name, *args, **kwargs)

    return SecretlessLoader()


def load_settings(inventory: str | os.PathLike | None = None,
                  repo: str | os.PathLike | None = None) -> Settings:
    """Every variable ``localhost`` sees in the inventory, templated (values
    encrypted inline with ansible-vault are left out)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    repo_root = find_repo(repo, inventory or os.environ.get(INVENTORY_ENV))
    inv_path = resolve_inventory(inventory, repo_root)
    loader = _secretless_loader()
    loader.set_basedir(str(repo_root))
    manager = InventoryManager(loader=loader, sources=[str(inv_path)])
    variables = VariableManager(loader=loader, inventory=manager)
    host = manager.get_host("localhost")
    hostvars = dict(variables.get_vars(host=host))
    hostvars["playbook_dir"] = str(repo_root / "playbooks")
    templar = Templar(loader=loader, variables=hostvars)
    wanted = {k: v for k, v in hostvars.items()
              if k.startswith("sop_") and not _encrypted(v)}
    try:
        rendered = templar.template(wanted)
    except Exception as exc:  # Ansible raises its own error types for bad templates
        raise ConfigError(f"{inv_path}: cannot read the sop_* settings: {exc}") from exc
    if "sop_zone" not in rendered:
        raise ConfigError(f"{inv_path}: sop_zone is not set in the inventory")
    return Settings(repo_root=repo_root, inventory=inv_path, vars=_plain(rendered),
                    controllers=_controllers(manager))


def _encrypted(value) -> bool:
    from ansible.parsing.vault import EncryptedString

    return isinstance(value, EncryptedString)


def _controllers(manager) -> tuple[Controller, ...]:
    group = manager.groups.get("controller")
    if group is None:
        return ()
    found = []
    for host in group.get_hosts():
        address = host.vars.get("ansible_host") or host.name
        found.append(Controller(name=host.name, address=str(address)))
    return tuple(found)


def _plain(value):
    """Ansible's tagged/lazy containers as plain Python data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def runner_env(settings: Settings) -> dict[str, str]:
    """The environment of an ansible-runner run of this checkout: its ansible.cfg
    and plugins, and ansible-playbook from the same environment as this Python."""
    repo = settings.repo_root
    return {
        "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
        "ANSIBLE_HOME": str(repo / ".ansible"),
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(repo / "scripts"), os.environ.get("PYTHONPATH")])),
    }
