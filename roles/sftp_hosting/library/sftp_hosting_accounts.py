#!/usr/bin/python
"""Ansible module: every chrooted SFTP hosting account in one call.

One task instead of four loops (user, chroot folder, web folder, quota) over
hundreds of accounts: the accounts are compared with the passwd, group and
shadow databases and only what differs is changed, with shadow's own tools
(``useradd``, ``usermod``, ``chpasswd -e`` reading the hashes on standard
input, so no hash ever appears on a command line).
"""

from __future__ import annotations

import csv
import grp
import io
import os
import pwd
import shutil
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: sftp_hosting_accounts
short_description: Create and update chrooted SFTP-only hosting accounts in one call
description:
  - Creates the Unix account of every hosting account that is missing and
    corrects the home, shell, primary group and comment of those that exist.
  - Sets password hashes with C(chpasswd -e), hashes given on standard input.
  - Lays out each chroot, C(home) owned by root and not writable by anyone
    else (as sshd's ChrootDirectory requires), with the one folder
    C(web_dir) inside that belongs to the account.
  - Sets the block quota of each account where the file system enforces user
    quotas, and measures what every account uses (allocated blocks, like
    C(du)) so that over-quota accounts can be reported where it does not.
  - Never removes an account it was not told to remove; accounts of the group
    that are no longer wanted are reported in C(unmanaged).
  - Locks the password of the accounts in C(locked) (archived accounts, as
    C(usermod --lock) does) and deletes the accounts in C(removed) (purged;
    their files are not touched here), both only for members of C(group).
  - Supports check mode.
options:
  accounts:
    description: The accounts.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: User name., type: str, required: true}
      home: {description: Home and chroot (absolute path)., type: str, required: true}
      hash:
        description: crypt(3) hash of the password, or C(!) for a locked one.
        type: str
        required: true
      comment: {description: GECOS comment., type: str, default: ""}
      quota_bytes: {description: Disk quota in bytes; 0 or absent for none., type: int, default: 0}
  group:
    description: Primary group of every account; made (a system group) when missing.
    type: str
    required: true
  shell:
    description: Login shell (one that refuses logins).
    type: str
    default: /usr/sbin/nologin
  web_dir:
    description: The account's writable folder inside its chroot.
    type: str
    default: public
  web_dir_mode: {description: Mode of the web folder., type: str, default: "0755"}
  quota:
    description:
      - C(enforce) sets quotas and fails where the file system has no user quotas;
        C(measure) only measures; C(auto) enforces where the file system has
        user quotas and C(setquota) is installed, and measures elsewhere.
    type: str
    choices: [auto, enforce, measure]
    default: auto
  min_uid:
    description: Refuse to manage an existing account with a lower uid (a system account).
    type: int
    default: 1000
  locked:
    description: Names of existing accounts of the group whose password is locked.
    type: list
    elements: str
    default: []
  removed:
    description: Names of accounts of the group to delete (userdel, files kept).
    type: list
    elements: str
    default: []
"""

RETURN = r"""
created: {description: Accounts created., type: list, returned: always}
updated:
  description: Accounts corrected, with the fields that changed.
  type: dict
  returned: always
group_created: {description: Whether the group was made now., type: bool, returned: always}
passwords: {description: Accounts whose hash was set., type: list, returned: always}
directories: {description: Folders created or corrected., type: list, returned: always}
quotas: {description: Accounts whose quota was set., type: list, returned: always}
quota_mode: {description: "Per mount point: enforce or measure.", type: dict, returned: always}
unmanaged: {description: Members of the group not in C(accounts)., type: list, returned: always}
locked: {description: Accounts whose password was locked now., type: list, returned: always}
removed: {description: Accounts deleted now., type: list, returned: always}
usage:
  description:
    - Per account name, home, used_bytes, quota_bytes, enforced, and over
      (used beyond the quota).
  type: list
  returned: always
"""

SHADOW = "/etc/shadow"
QUOTA_OPTIONS = ("usrquota", "usrjquota", "quota", "uquota")


def read_shadow(path: str = SHADOW) -> dict[str, str]:
    """User name -> password field of the shadow database."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            fields = line.rstrip("\n").split(":")
            if len(fields) >= 2:
                out[fields[0]] = fields[1]
    return out


def mount_points(path: str = "/proc/self/mounts") -> list[tuple[str, set[str]]]:
    """(mount point, options) of every mounted file system, longest first."""
    mounts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 4:
                point = parts[1].replace("\\040", " ")
                options = {opt.split("=", 1)[0] for opt in parts[3].split(",")}
                mounts.append((point, options))
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def mount_of(path: str, mounts: list[tuple[str, set[str]]]) -> tuple[str, set[str]]:
    """The mount point holding ``path`` (deepest match) and its options."""
    for point, options in mounts:
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return point, options
    return "/", set()


def used_bytes(top: str) -> int:
    """Bytes allocated to the files under ``top`` (like ``du -s -B1``), hard links once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    try:
        total += os.lstat(top).st_blocks * 512
    except OSError:
        pass
    return total


def parse_repquota_csv(text: str) -> dict[str, tuple[int, int]]:
    """User -> (block soft, block hard) limits in KiB from ``repquota -O csv``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("User,")), None)
    if start is None:
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        soft = row.get("BlockSoftLimit", row.get("SpaceSoftLimit"))
        hard = row.get("BlockHardLimit", row.get("SpaceHardLimit"))
        try:
            out[row["User"]] = (int(soft), int(hard))
        except (TypeError, ValueError, KeyError):
            continue
    return out


class Accounts:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.result: dict = {
            "changed": False, "group_created": False, "created": [], "updated": {},
            "passwords": [],
            "directories": [], "quotas": [], "quota_mode": {}, "unmanaged": [], "usage": [],
            "locked": [], "removed": [],
        }

    # --- helpers ---------------------------------------------------------

    def fail(self, msg: str) -> None:
        self.module.fail_json(msg=msg, **self.result)

    def run(self, argv: list[str], data: str | None = None) -> str:
        rc, out, err = self.module.run_command(argv, data=data, binary_data=data is not None)
        if rc != 0:
            self.fail(f"{argv[0]} failed ({rc}): {err.strip() or out.strip()}")
        return out

    def changed(self, key: str, value) -> None:
        self.result["changed"] = True
        if isinstance(self.result[key], dict):
            name, fields = value
            self.result[key].setdefault(name, []).extend(fields)
        else:
            self.result[key].append(value)

    # --- checks ----------------------------------------------------------

    def check_input(self) -> None:
        names, homes = set(), set()
        for acct in self.p["accounts"]:
            name, home = acct["name"], acct["home"]
            if name in names:
                self.fail(f"account {name} is listed twice")
            if not os.path.isabs(home) or os.path.normpath(home) != home or home == "/":
                self.fail(f"account {name}: home must be a normalized absolute path, not {home!r}")
            if home in homes:
                self.fail(f"account {name}: home {home} is another account's")
            if not acct["hash"] or any(c in acct["hash"] for c in ":\n\r"):
                self.fail(f"account {name}: the password hash is empty or malformed")
            if any(c in (acct["comment"] or "") for c in ":\n\r"):
                self.fail(f"account {name}: the comment may not hold ':' or line breaks")
            names.add(name)
            homes.add(home)
        both = (set(self.p["locked"]) | set(self.p["removed"])) & names
        if both:
            self.fail(f"{', '.join(sorted(both))}: wanted and also to lock or remove")
        web_dir = self.p["web_dir"]
        if not web_dir or "/" in web_dir or web_dir in (".", ".."):
            self.fail(f"web_dir must be one folder name, not {web_dir!r}")

    # --- accounts --------------------------------------------------------

    def ensure_accounts(self, gid: int | None) -> None:
        shadow = read_shadow()
        group, shell = self.p["group"], self.p["shell"]
        lines = []
        for acct in self.p["accounts"]:
            name, home, comment = acct["name"], acct["home"], acct["comment"] or ""
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                pw = None
            if pw is None:
                if not self.check:
                    self.run(["useradd", "--no-create-home", "--home-dir", home,
                              "--shell", shell, "--gid", group, "--comment", comment, name])
                self.changed("created", name)
            else:
                if pw.pw_uid < self.p["min_uid"]:
                    self.fail(f"{name} exists as a system account (uid {pw.pw_uid}); "
                              "refusing to turn it into a hosting account")
                args, fields = [], []
                if pw.pw_dir != home:
                    args += ["--home", home]
                    fields.append("home")
                if pw.pw_shell != shell:
                    args += ["--shell", shell]
                    fields.append("shell")
                if gid is None or pw.pw_gid != gid:
                    args += ["--gid", group]
                    fields.append("group")
                if pw.pw_gecos != comment:
                    args += ["--comment", comment]
                    fields.append("comment")
                if args:
                    if not self.check:
                        self.run(["usermod", *args, name])
                    self.changed("updated", (name, fields))
            if shadow.get(name) != acct["hash"]:
                lines.append(f"{name}:{acct['hash']}\n")
                self.changed("passwords", name)
        if lines and not self.check:
            # Hashes on standard input only: never on a command line.
            self.run(["chpasswd", "--encrypted"], data="".join(lines))

    def _member(self, name: str, gid: int | None) -> pwd.struct_passwd | None:
        """The account when it is one of ours (in the group, not a system account)."""
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        if gid is None or pw.pw_uid < self.p["min_uid"]:
            return None
        if pw.pw_gid != gid and name not in grp.getgrgid(gid).gr_mem:
            return None
        return pw

    def lock_and_remove(self, gid: int | None) -> None:
        shadow = read_shadow()
        for name in self.p["locked"]:
            if self._member(name, gid) and not shadow.get(name, "!").startswith("!"):
                if not self.check:
                    self.run(["usermod", "--lock", name])
                self.changed("locked", name)
        for name in self.p["removed"]:
            if self._member(name, gid):
                if not self.check:
                    self.run(["userdel", name])
                self.changed("removed", name)

    def unmanaged(self, gid: int | None) -> None:
        if gid is None:
            return
        wanted = {a["name"] for a in self.p["accounts"]}
        members = {pw.pw_name for pw in pwd.getpwall() if pw.pw_gid == gid}
        members |= set(grp.getgrgid(gid).gr_mem)
        self.result["unmanaged"] = sorted(members - wanted)

    # --- folders ---------------------------------------------------------

    def ensure_dir(self, path: str, uid: int | None, gid: int | None, mode: int) -> None:
        """A real folder (not a link) with this owner and mode; ``None`` ids: not known yet."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None:
            if not self.check:
                os.mkdir(path, mode)
                os.chown(path, uid, gid)
                os.chmod(path, mode)
            self.changed("directories", path)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.fail(f"{path} exists and is not a folder (a link or a file): fix it by hand")
        fix = stat.S_IMODE(st.st_mode) != mode
        if uid is not None and gid is not None and (st.st_uid, st.st_gid) != (uid, gid):
            fix = True
        if fix:
            if not self.check:
                os.chown(path, uid, gid, follow_symlinks=False)
                os.chmod(path, mode)
            self.changed("directories", path)

    def check_parents(self, home: str) -> None:
        """sshd chroots only into a path whose every folder is root's and not writable by others."""
        parent = os.path.dirname(home)
        missing = []
        while parent != "/" and not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        path = parent
        while True:
            st = os.stat(path)
            if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                self.fail(f"{path} must belong to root and not be writable by group or others, "
                          f"or sshd refuses to lock accounts into {home}")
            if path == "/":
                break
            path = os.path.dirname(path)
        for folder in reversed(missing):
            self.ensure_dir(folder, 0, 0, 0o755)

    def ensure_folders(self) -> None:
        mode = int(self.p["web_dir_mode"], 8)
        checked_parents: set[str] = set()
        for acct in self.p["accounts"]:
            home = acct["home"]
            if os.path.dirname(home) not in checked_parents:
                self.check_parents(home)
                checked_parents.add(os.path.dirname(home))
            self.ensure_dir(home, 0, 0, 0o755)
            try:
                pw = pwd.getpwnam(acct["name"])
                uid, gid = pw.pw_uid, pw.pw_gid
            except KeyError:  # check mode: the account is not there yet
                uid = gid = None
            self.ensure_dir(os.path.join(home, self.p["web_dir"]), uid, gid, mode)

    # --- quotas and usage ------------------------------------------------

    def quotas_and_usage(self) -> None:
        mounts = mount_points()
        setquota = shutil.which("setquota")
        repquota = shutil.which("repquota")
        by_mount: dict[str, list[dict]] = {}
        for acct in self.p["accounts"]:
            point, options = mount_of(acct["home"], mounts)
            by_mount.setdefault(point, []).append(acct)
            if point not in self.result["quota_mode"]:
                has_quota = bool(options & set(QUOTA_OPTIONS))
                wanted = self.p["quota"]
                if wanted == "enforce" and not (has_quota and setquota and repquota):
                    self.fail(f"quota enforcement asked for, but {point} is not mounted with "
                              "usrquota or the quota tools are missing (README: Quotas)")
                enforce = wanted != "measure" and has_quota and bool(setquota and repquota)
                self.result["quota_mode"][point] = "enforce" if enforce else "measure"
        for point, accts in sorted(by_mount.items()):
            if self.result["quota_mode"][point] == "enforce":
                self.set_quotas(point, accts, repquota, setquota)
        for acct in self.p["accounts"]:
            used = used_bytes(acct["home"]) if os.path.isdir(acct["home"]) else 0
            quota = acct["quota_bytes"] or 0
            point, _ = mount_of(acct["home"], mounts)
            self.result["usage"].append({
                "name": acct["name"], "home": acct["home"], "used_bytes": used,
                "quota_bytes": quota, "over": bool(quota) and used > quota,
                "enforced": self.result["quota_mode"][point] == "enforce",
            })

    def set_quotas(self, point: str, accts: list[dict], repquota: str, setquota: str) -> None:
        current = parse_repquota_csv(self.run([repquota, "-u", "-v", "-O", "csv", point]))
        lines = []
        for acct in accts:
            kib = -(-(acct["quota_bytes"] or 0) // 1024)  # whole KiB, rounded up
            if current.get(acct["name"]) != (kib, kib):
                lines.append(f"{acct['name']} {kib} {kib} 0 0\n")
                self.changed("quotas", acct["name"])
        if lines and not self.check:
            self.run([setquota, "-u", "-b", point], data="".join(lines))

    # --- all -------------------------------------------------------------

    def apply(self) -> dict:
        self.check_input()
        try:
            gid = grp.getgrnam(self.p["group"]).gr_gid
        except KeyError:
            self.result["changed"] = self.result["group_created"] = True
            gid = None  # check mode: the group would be made now
            if not self.check:
                self.run(["groupadd", "--system", self.p["group"]])
                gid = grp.getgrnam(self.p["group"]).gr_gid
        self.ensure_accounts(gid)
        self.lock_and_remove(gid)
        self.ensure_folders()
        self.quotas_and_usage()
        self.unmanaged(gid)
        return self.result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "accounts": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "home": {"type": "str", "required": True},
                    "hash": {"type": "str", "required": True, "no_log": True},
                    "comment": {"type": "str", "default": ""},
                    "quota_bytes": {"type": "int", "default": 0},
                },
            },
            "group": {"type": "str", "required": True},
            "shell": {"type": "str", "default": "/usr/sbin/nologin"},
            "web_dir": {"type": "str", "default": "public"},
            "web_dir_mode": {"type": "str", "default": "0755"},
            "quota": {"type": "str", "default": "auto",
                      "choices": ["auto", "enforce", "measure"]},
            "min_uid": {"type": "int", "default": 1000},
            "locked": {"type": "list", "elements": "str", "default": []},
            "removed": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    module.exit_json(**Accounts(module).apply())


if __name__ == "__main__":
    main()
