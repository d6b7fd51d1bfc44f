#!/usr/bin/python
"""Ansible module: move folders aside into a dated archive, bring them back,
delete archives, for any number of folders in one call.

Removal with an undo window (issue 9): a mailbox or a site that is no longer
requested is not deleted but moved to ``<root>/.archive/<name>-<YYYY-MM-DD>``
(same file system: a rename), restored if it is asked for again, and deleted
only by a later run once the retention has passed. Every operation is
idempotent, so the caller may list the same folders on every run.
"""

from __future__ import annotations

import os
import shutil
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: storage_archive
short_description: Archive, restore and purge folders in one call
description:
  - C(archive) items - a folder at C(path) is moved to C(archive) (nothing to
    do when it is already there or there is no folder).
  - C(restore) items - the folder at C(archive) is moved back to C(path).
  - C(purge) items - the folder C(archive) is deleted with everything in it.
  - Every C(archive) path must be directly inside a folder named
    C(archive_dirname); that folder is created root-owned with mode 0700,
    so archived data is out of every account's reach.
  - A folder found both at C(path) and at C(archive) is never merged or
    overwritten - the module fails and names both.
  - Supports check mode.
options:
  archive: {description: Folders to move aside., type: list, elements: dict, default: []}
  restore: {description: Archived folders to move back., type: list, elements: dict, default: []}
  purge: {description: Archived folders to delete., type: list, elements: dict, default: []}
  archive_dirname: {description: Name of the archive folders., type: str, default: .archive}
notes:
  - Each item has C(name) (for the result), C(path) (the live folder) and
    C(archive) (the archived folder).
"""

RETURN = r"""
archived: {description: Names moved aside now., type: list, returned: always}
restored: {description: Names moved back now., type: list, returned: always}
purged: {description: Names whose archive was deleted now., type: list, returned: always}
purged_bytes:
  description: Bytes of the archives deleted now (allocated blocks).
  type: int
  returned: always
"""

ITEM = {"name": {"type": "str", "required": True},
        "path": {"type": "str", "required": True},
        "archive": {"type": "str", "required": True},
        "username": {"type": "str"}}


def _isdir(path: str) -> bool:
    """A real folder (a link to one does not count)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _exists(path: str) -> bool:
    return os.path.lexists(path)


def _bytes(top: str) -> int:
    total = 0
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _move(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system, copy then delete
            raise
        shutil.move(src, dst)


class Archive:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.result = {"changed": False, "archived": [], "restored": [], "purged": [],
                       "purged_bytes": 0}

    def fail(self, msg: str) -> None:
        self.module.fail_json(msg=msg, **self.result)

    def validate(self) -> None:
        for key in ("archive", "restore", "purge"):
            for item in self.p[key]:
                for field in ("path", "archive"):
                    value = item[field]
                    if not os.path.isabs(value) or os.path.normpath(value) != value:
                        self.fail(f"{item['name']}: {field} must be a normalized absolute "
                                  f"path, not {value!r}")
                parent = os.path.dirname(item["archive"])
                if os.path.basename(parent) != self.p["archive_dirname"]:
                    self.fail(f"{item['name']}: {item['archive']} is not inside a folder "
                              f"named {self.p['archive_dirname']}")
                if item["path"] == item["archive"] or item["archive"].startswith(
                        item["path"] + "/"):
                    self.fail(f"{item['name']}: the archive may not be inside the folder")

    def archive_dir(self, archive: str) -> None:
        parent = os.path.dirname(archive)
        if _isdir(parent):
            st = os.lstat(parent)
            if (st.st_uid, stat.S_IMODE(st.st_mode)) != (0, 0o700):
                if not self.check:
                    os.chown(parent, 0, 0, follow_symlinks=False)
                    os.chmod(parent, 0o700)
                self.result["changed"] = True
            return
        if _exists(parent):
            self.fail(f"{parent} exists and is not a folder: fix it by hand")
        if not self.check:
            os.mkdir(parent, 0o700)
            os.chown(parent, 0, 0)
            os.chmod(parent, 0o700)
        self.result["changed"] = True

    def both(self, item: dict) -> None:
        self.fail(f"{item['name']}: both {item['path']} and its archive {item['archive']} "
                  "exist; nothing was moved. Decide by hand which one to keep.")

    def do_archive(self) -> None:
        for item in self.p["archive"]:
            path, archive = item["path"], item["archive"]
            if not _exists(path):
                continue  # archived already (or never had data)
            if not _isdir(path):
                self.fail(f"{item['name']}: {path} is not a folder (a link or a file)")
            if _exists(archive):
                self.both(item)
            self.archive_dir(archive)
            if not self.check:
                _move(path, archive)
            self.result["archived"].append(item["name"])
            self.result["changed"] = True

    def do_restore(self) -> None:
        for item in self.p["restore"]:
            path, archive = item["path"], item["archive"]
            if not _isdir(archive):
                continue  # nothing archived (or restored already)
            if _exists(path):
                self.both(item)
            parent = os.path.dirname(path)
            if not _isdir(parent):
                # Like its own parent (the mail domain's folder under the mail root).
                st = os.stat(os.path.dirname(parent))
                if not self.check:
                    os.makedirs(parent, stat.S_IMODE(st.st_mode))
                    os.chown(parent, st.st_uid, st.st_gid)
            if not self.check:
                _move(archive, path)
            self.result["restored"].append(item["name"])
            self.result["changed"] = True

    def do_purge(self) -> None:
        for item in self.p["purge"]:
            archive = item["archive"]
            if not _exists(archive):
                continue
            if not _isdir(archive):
                self.fail(f"{item['name']}: {archive} is not a folder")
            self.result["purged_bytes"] += _bytes(archive)
            if not self.check:
                shutil.rmtree(archive)
            self.result["purged"].append(item["name"])
            self.result["changed"] = True

    def apply(self) -> dict:
        self.validate()
        self.do_restore()
        self.do_archive()
        self.do_purge()
        return self.result


def main() -> None:
    item = {"type": "list", "elements": "dict", "default": [], "options": ITEM}
    module = AnsibleModule(
        argument_spec={
            "archive": item,
            "restore": item,
            "purge": item,
            "archive_dirname": {"type": "str", "default": ".archive"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**Archive(module).apply())


if __name__ == "__main__":
    main()
