"""The credential register (SOP step 5, record 4).

An ansible-vault encrypted YAML file holding, per account, the username, the
plaintext password (it is printed for the agency: SOP step 7) and its hash
(what the servers receive: SHA512-CRYPT; MariaDB's native hash for a database
user); and, under ``keys``, the servers' own shared secrets (the DNS
zone-transfer TSIG key), generated once like passwords. Rules:

- a password is generated once and never changes on a re-run; ``reset`` is the
  only way to issue a new one;
- the file is written atomically (temporary file, fsync, rename) with mode 0600,
  before any account is created, so a run killed at any moment loses nothing;
- the vault password comes from a file or the environment, never the repository.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from passlib.hash import sha512_crypt

# No look-alikes: no 0/O/o, 1/l/I/i, 5/S, 2/Z/z, 8/B, and no u/v pair.
ALPHABET = "abcdefghjkmnpqrstwxyACDEFGHJKLMNPQRTWXY34679"
GROUPS = 4
GROUP_LEN = 4
HASH_ROUNDS = 50_000
# Below this many new passwords per worker, hashing stays in this process.
PARALLEL_HASH_MIN = 16
VAULT_ENV = "SOP_VAULT_PASSWORD"
VAULT_FILE_ENV = "SOP_VAULT_PASSWORD_FILE"
# HMAC-SHA256 keys: as long as the hash output (RFC 8945 recommends at least that).
KEY_BYTES = 32


# libyaml's safe loader and dumper when PyYAML has them: the register of
# hundreds of agencies (thousands of accounts) is read several times a run.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class RegisterError(Exception):
    """A problem with the register an administrator must fix (plain words)."""


def generate_password() -> str:
    """A password grouped for reading aloud: ``xxxx-xxxx-xxxx-xxxx``.

    16 symbols from a 44-symbol alphabet: about 87 bits of entropy.
    """
    groups = (
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN)) for _ in range(GROUPS)
    )
    return "-".join(groups)


def generate_key_secret() -> str:
    """A TSIG secret: random bytes, base64 as named.conf wants it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def hash_password(password: str) -> str:
    """SHA512-CRYPT (``$6$``): accepted by Dovecot and by shadow."""
    return sha512_crypt.using(rounds=HASH_ROUNDS).hash(password)


def mariadb_hash(password: str) -> str:
    """MariaDB's mysql_native_password hash (``*`` and SHA1(SHA1(password)) in
    hex): what ``CREATE USER ... IDENTIFIED BY PASSWORD`` takes, so the database
    server, like the others, never receives the password itself."""
    stage1 = hashlib.sha1(password.encode()).digest()  # noqa: S324 (MariaDB's format)
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


def hash_for(kind: str, password: str) -> str:
    """The hash the servers receive for an account of this kind."""
    return mariadb_hash(password) if kind == "database" else hash_password(password)


def hash_passwords(passwords: list[str]) -> list[str]:
    """Hashes of many passwords, on every core when there are many (a first run
    of hundreds of agencies: thousands of accounts at ~15 ms of CPU each)."""
    workers = min(os.cpu_count() or 1, len(passwords) // PARALLEL_HASH_MIN)
    if workers < 2:
        return [hash_password(p) for p in passwords]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(hash_password, passwords, chunksize=PARALLEL_HASH_MIN))


def vault_password(password_file: str | os.PathLike | None = None) -> bytes:
    """The vault password: ``$SOP_VAULT_PASSWORD``, else the file named by
    ``$SOP_VAULT_PASSWORD_FILE``, else the given file (the inventory's
    ``sop_vault_password_file``): the environment wins over the inventory."""
    if os.environ.get(VAULT_ENV):
        return os.environ[VAULT_ENV].encode()
    path = os.environ.get(VAULT_FILE_ENV) or password_file
    if not path:
        raise RegisterError(
            f"no vault password: set {VAULT_ENV} or {VAULT_FILE_ENV}, or sop_vault_password_file"
        )
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise RegisterError(f"cannot read the vault password file {path}: {exc.strerror}") from exc
    if not secret:
        raise RegisterError(f"the vault password file {path} is empty")
    return secret


@contextlib.contextmanager
def vault_password_file(settings, run_dir: Path):
    """A file holding the vault password for the run's Ansible: the file it
    was read from, or (from ``$SOP_VAULT_PASSWORD``) a 0600 file in the run's
    private folder, removed afterwards. The variable itself is taken out of
    this process's environment for the run, so no child or artifact has it."""
    secret = os.environ.pop(VAULT_ENV, None)
    try:
        if secret is None:
            vault_password(settings.path("sop_vault_password_file"))  # a clear error if none
            given = os.environ.get(VAULT_FILE_ENV) or settings.path("sop_vault_password_file")
            yield Path(given).resolve()
            return
        path = run_dir / ".vault-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secret.encode() + b"\n")
        finally:
            os.close(fd)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
    finally:
        if secret is not None:
            os.environ[VAULT_ENV] = secret



class Register:
    """Load, update and save the encrypted register."""

    def __init__(self, path: str | os.PathLike, password: bytes):
        self.path = Path(path)
        self._vault = VaultLib([("default", VaultSecret(password))])
        self.accounts: dict[str, dict] = {}
        self.changed_agency = False  # ensure() filled in an agency: save
        self.keys: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        try:
            plain = self._vault.decrypt(raw)
        except Exception as exc:  # AnsibleError subclasses: wrong password, damaged file
            raise RegisterError(
                f"cannot decrypt the register {self.path}: wrong vault password or damaged file"
            ) from exc
        data = yaml.load(plain, Loader=_SafeLoader) or {}  # noqa: S506 (a safe loader)
        self.accounts = dict(data.get("accounts") or {})
        self.keys = dict(data.get("keys") or {})

    def save(self) -> None:
        """Encrypt and replace the file atomically, mode 0600."""
        data = {"accounts": self.accounts, **({"keys": self.keys} if self.keys else {})}
        body = yaml.dump(data, Dumper=_SafeDumper, sort_keys=True, allow_unicode=True)
        cipher = self._vault.encrypt(body)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".register-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(cipher)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def ensure(self, wanted: Iterable[Mapping], today: dt.date | None = None) -> list[str]:
        """Add a password for every wanted account that has none. Returns new ids."""
        today = today or dt.date.today()
        wanted = list(wanted)
        # The agency holding each live account (issue 16: an archived account is
        # never handed to another agency); filled in for entries made before.
        for acct in wanted:
            entry = self.accounts.get(acct["id"])
            if entry is not None and acct.get("agency") and not entry.get("archived") \
                    and not entry.get("agency"):
                entry["agency"] = acct["agency"]
                self.changed_agency = True
        new = [acct for acct in wanted if acct["id"] not in self.accounts]
        passwords = [generate_password() for _ in new]
        crypt = [i for i, acct in enumerate(new) if acct["kind"] != "database"]
        hashes = [mariadb_hash(p) for p in passwords]
        for i, hashed in zip(crypt, hash_passwords([passwords[i] for i in crypt]), strict=True):
            hashes[i] = hashed
        added = []
        for acct, password, hashed in zip(new, passwords, hashes, strict=True):
            if acct["id"] in self.accounts:  # listed twice
                continue
            self.accounts[acct["id"]] = {
                "username": acct["username"],
                "kind": acct["kind"],
                "subdomain": acct["subdomain"],
                **({"agency": acct["agency"]} if acct.get("agency") else {}),
                "password": password,
                "hash": hashed,
                "created": today.isoformat(),
                # Not yet on a printout: `sop apply` or `sop print` prints it.
                "printed": False,
                "reprint": False,
            }
            added.append(acct["id"])
        return added

    def ensure_keys(self, wanted: Iterable[Mapping], today: dt.date | None = None) -> list[str]:
        """Add a secret for every wanted key (``name``, ``algorithm``) that has none."""
        today = today or dt.date.today()
        added = []
        for key in wanted:
            name = str(key["name"])  # plain str: Ansible hands tagged strings
            if name in self.keys:
                continue
            self.keys[name] = {
                "algorithm": str(key.get("algorithm") or "hmac-sha256"),
                "secret": generate_key_secret(),
                "created": today.isoformat(),
            }
            added.append(name)
        return added

    def mark_archived(self, ids: Iterable[str], today: dt.date | None = None) -> list[str]:
        """Note the day accounts were archived (issue 9); the purge counts from it.

        An account already marked keeps its first date. Returns the ids marked now.
        """
        day = (today or dt.date.today()).isoformat()
        marked = []
        for account_id in ids:
            entry = self.accounts.get(account_id)
            if entry is not None and not entry.get("archived"):
                entry["archived"] = day
                marked.append(account_id)
        return marked

    def restore(self, ids: Iterable[str]) -> list[str]:
        """Asked for again within the undo window: live again, same password."""
        restored = []
        for account_id in ids:
            entry = self.accounts.get(account_id)
            if entry is not None and entry.pop("archived", None):
                restored.append(account_id)
        return restored

    def forget(self, ids: Iterable[str]) -> list[str]:
        """Drop purged accounts (their data is gone from the servers)."""
        return [account_id for account_id in ids
                if self.accounts.pop(account_id, None) is not None]

    def reset(self, account_id: str, today: dt.date | None = None) -> None:
        """Issue a new password and mark the printout to be reprinted."""
        if account_id not in self.accounts:
            raise RegisterError(f"no account {account_id!r} in the register {self.path}")
        password = generate_password()
        entry = self.accounts[account_id]
        entry.update(
            password=password,
            hash=hash_for(entry.get("kind", ""), password),
            reset=(today or dt.date.today()).isoformat(),
            reprint=True,
        )

    def print_due(self, label: str) -> bool:
        """Whether the request's sheet must be printed (new or reset account)."""
        return any(
            entry.get("printed", True) is False or entry.get("reprint")
            for entry in self.for_subdomain(label).values()
        )

    def mark_printed(self, label: str) -> None:
        for entry in self.for_subdomain(label).values():
            entry["printed"] = True
            entry["reprint"] = False

    def hashes(self) -> dict[str, str]:
        return {key: entry["hash"] for key, entry in self.accounts.items()}

    def for_subdomain(self, label: str) -> dict[str, dict]:
        return {k: v for k, v in self.accounts.items() if v.get("subdomain") == label}
