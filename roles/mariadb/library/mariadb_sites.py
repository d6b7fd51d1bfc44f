#!/usr/bin/python
"""Ansible module: every site's MariaDB database and user in one call.

The server is asked once what exists (databases, users with their password
hash, lock and grants); only what differs is changed. SQL goes to the
``mariadb`` client on standard input, as root through the local socket
(Debian's root@localhost authenticates with unix_socket): no hash or name
ever appears on a command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mariadb_sites
short_description: One MariaDB database and one user of the same name per site
description:
  - Creates every database and its user (C(user@localhost), password given as
    MariaDB's native hash, all privileges on that database only) that is
    missing, corrects a user's hash and lock, and grants what is missing.
  - Archives databases (a dump with C(mariadb-dump --single-transaction), the
    user and the database then dropped), restores them from their dump, and
    deletes the dumps of purged ones.
  - Never touches a database or user it is not told about.
  - Supports check mode.
options:
  databases:
    description: Wanted databases.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: "Database name ([a-z0-9_]).", type: str, required: true}
      user: {description: User name (localhost)., type: str, required: true}
      hash:
        description: "MariaDB native hash (C(*) and 40 hex digits)."
        type: str
        required: true
        no_log: true
      locked: {description: The user refuses logins (ACCOUNT LOCK)., type: bool, default: false}
  archive:
    description: Databases to dump to C(archive) and drop with their user.
    type: list
    elements: dict
    default: []
  restore:
    description: Databases to load from their dump C(archive) when they do not exist.
    type: list
    elements: dict
    default: []
  purge:
    description: Archived databases whose dump C(archive) is deleted.
    type: list
    elements: dict
    default: []
  socket: {description: The server's socket., type: str, default: /run/mysqld/mysqld.sock}
"""

RETURN = r"""
created: {description: Databases created (or restored)., type: list}
updated: {description: Users whose hash, lock or grant changed., type: list}
archived: {description: Databases dumped and dropped., type: list}
restored: {description: Databases loaded from their dump., type: list}
purged: {description: Dumps deleted., type: list}
sizes: {description: "Bytes of every database (information_schema), by name.", type: dict}
"""

NAME = re.compile(r"[a-z0-9_]{1,64}\Z")
HASH = re.compile(r"\*[0-9A-F]{40}\Z")


class Server:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.socket = module.params["socket"]

    def run(self, sql: str, database: str | None = None) -> str:
        argv = ["mariadb", "--batch", "--skip-column-names", f"--socket={self.socket}"]
        if database:
            argv.append(f"--database={database}")
        rc, out, err = self.module.run_command(argv, data=sql, binary_data=True)
        if rc != 0:
            self.module.fail_json(msg=f"mariadb failed: {err.strip()[-400:]}")
        return out

    def rows(self, sql: str) -> list[list[str]]:
        return [line.split("\t") for line in self.run(sql).splitlines() if line]


def _checked(module: AnsibleModule, item: dict, what: str) -> str:
    name = str(item.get("name", ""))
    if not NAME.match(name) or not NAME.match(str(item.get("user", name))):
        module.fail_json(msg=f"{what}: not a database or user name: {name!r}")
    return name


def _account(user: str) -> str:
    return f"'{user}'@'localhost'"


def _dump(module: AnsibleModule, server: Server, name: str, path: str) -> None:
    """Dump a database atomically to ``path`` (root only, mode 0600)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dump-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            _run_dump(module, server.socket, name, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _run_dump(module: AnsibleModule, socket: str, name: str, fh) -> None:
    """mariadb-dump straight into the open file (a dump can be large)."""
    result = subprocess.run(
        ["mariadb-dump", "--single-transaction", "--routines", "--triggers", "--events",
         f"--socket={socket}", "--databases", name],
        stdout=fh, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        module.fail_json(msg=f"mariadb-dump {name} failed: "
                             f"{result.stderr.decode(errors='replace').strip()[-400:]}")


def main() -> None:
    item_spec = {"name": {"type": "str", "required": True},
                 "user": {"type": "str"},
                 "subdomain": {"type": "str"},
                 "archive": {"type": "str", "required": True}}
    module = AnsibleModule(
        argument_spec={
            "databases": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "user": {"type": "str", "required": True},
                "hash": {"type": "str", "required": True, "no_log": True},
                "locked": {"type": "bool", "default": False}}},
            "archive": {"type": "list", "elements": "dict", "default": [], "options": item_spec},
            "restore": {"type": "list", "elements": "dict", "default": [], "options": item_spec},
            "purge": {"type": "list", "elements": "dict", "default": [], "options": item_spec},
            "socket": {"type": "str", "default": "/run/mysqld/mysqld.sock"},
        },
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    server = Server(module)
    for what in ("databases", "archive", "restore", "purge"):
        for item in p[what]:
            _checked(module, item, what)
    for item in p["databases"]:
        if not HASH.match(item["hash"]) and not (check and item["hash"] == "!"):
            module.fail_json(msg=f"databases: {item['name']}: the hash is not MariaDB's "
                                 "native hash")

    if check and not os.path.exists(server.socket):
        # A check run before MariaDB is installed or started: everything is to be made.
        module.exit_json(changed=bool(p["databases"]), created=[d["name"] for d in p["databases"]],
                         updated=[], archived=[], restored=[], purged=[], sizes={})
    existing = {r[0] for r in server.rows("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")}
    users = {r[0]: r[1:] for r in server.rows(
        "SELECT User, IFNULL(JSON_VALUE(Priv, '$.plugin'), ''), "
        "IFNULL(JSON_VALUE(Priv, '$.authentication_string'), ''), "
        "IFNULL(JSON_VALUE(Priv, '$.account_locked'), 'false') "
        "FROM mysql.global_priv WHERE Host = 'localhost'")}
    grants = {(r[0], r[1]) for r in server.rows(
        "SELECT User, Db FROM mysql.db WHERE Host = 'localhost' AND Select_priv = 'Y' "
        "AND Insert_priv = 'Y' AND Update_priv = 'Y' AND Delete_priv = 'Y' "
        "AND Create_priv = 'Y' AND Drop_priv = 'Y' AND Alter_priv = 'Y' "
        "AND Index_priv = 'Y'")}
    created, updated, archived, restored, purged = [], [], [], [], []

    wanted = {d["name"] for d in p["databases"]}
    # Archive first: dump, then drop the user and the database.
    for item in p["archive"]:
        name, user = item["name"], item.get("user") or item["name"]
        if name in wanted:
            continue
        if name not in existing and user not in users:
            continue
        archived.append(name)
        if check:
            continue
        if user in users:
            server.run(f"DROP USER IF EXISTS {_account(user)};")
        if name in existing:
            _dump(module, server, name, item["archive"])
            server.run(f"DROP DATABASE IF EXISTS `{name}`;")

    dumps = {i["name"]: i["archive"] for i in p["restore"]}
    for item in p["databases"]:
        name, user = item["name"], item["user"]
        statements = []
        if name not in existing:
            created.append(name)
            dump = dumps.get(name)
            if dump and os.path.isfile(dump):
                restored.append(name)
                if not check:
                    # The dump (--databases) creates the database and fills it.
                    with open(dump, "rb") as fh:
                        rc, _, err = module.run_command(
                            ["mariadb", f"--socket={server.socket}"], data=fh.read(),
                            binary_data=True)
                    if rc != 0:
                        module.fail_json(msg=f"loading the dump of {name} failed: "
                                             f"{err.strip()[-400:]}")
                    os.unlink(dump)
            else:
                statements.append(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                                  "COLLATE utf8mb4_unicode_ci;")
        lock = "LOCK" if item["locked"] else "UNLOCK"
        if user not in users:
            statements.append(f"CREATE USER {_account(user)} IDENTIFIED BY PASSWORD "
                              f"'{item['hash']}' ACCOUNT {lock};")
        else:
            plugin, current, locked = users[user]
            if plugin != "mysql_native_password" or current != item["hash"]:
                statements.append(f"ALTER USER {_account(user)} IDENTIFIED BY PASSWORD "
                                  f"'{item['hash']}';")
            if (locked in ("true", "1")) != item["locked"]:
                statements.append(f"ALTER USER {_account(user)} ACCOUNT {lock};")
        if (user, name) not in grants:
            statements.append(f"GRANT ALL PRIVILEGES ON `{name}`.* TO {_account(user)};")
        if statements and (user in users or name in existing):
            updated.append(name)
        if statements and not check:
            server.run("\n".join(statements))

    for item in p["purge"]:
        path = item["archive"]
        if item["name"] not in wanted and os.path.isfile(path):
            purged.append(item["name"])
            if not check:
                os.unlink(path)

    sizes = {}
    if wanted:
        for name, size in server.rows(
                "SELECT TABLE_SCHEMA, SUM(DATA_LENGTH + INDEX_LENGTH) FROM "
                "information_schema.TABLES GROUP BY TABLE_SCHEMA"):
            if name in wanted:
                sizes[name] = int(size or 0)
        for name in wanted:
            sizes.setdefault(name, 0)
    changed = bool(created or updated or archived or restored or purged)
    module.exit_json(changed=changed, created=created, updated=sorted(set(updated)),
                     archived=archived, restored=restored, purged=purged, sizes=sizes)


if __name__ == "__main__":
    main()
