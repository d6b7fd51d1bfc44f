#!/usr/bin/python
"""Module: write several small files in one call (the sop_files action renders them).

Ansible's `template` costs a module call per file (about 0.3 s here); a role
with a handful of lookup tables pays it per table on every run. This module
takes every file's content at once, writes only those that differ (through a
temporary file in the same folder and an atomic rename), and puts owner,
group and mode right on the others.
"""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: sop_files
short_description: Write several files in one call, each only when its content differs
description:
  - Use through the sop_files action, which renders the templates on the controller.
  - A file is replaced atomically; owner and group apply to every file and folder,
    each file has its own mode.
options:
  files:
    description: The files, each with dest, content and mode (octal string).
    type: list
    elements: dict
    required: true
  owner: {description: Owner of every file and directory., type: str, required: true}
  group: {description: Group of every file and directory., type: str, required: true}
  directories:
    description: Folders made (mode 0755) or put right first.
    type: list
    elements: str
    default: []
"""

RETURN = r"""
changed_files:
  description: The folders made and the files written, or whose owner, group or mode was set.
  type: list
"""


def _current(module: AnsibleModule, path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder in its place, no permission
        module.fail_json(msg=f"cannot read {path}: {exc.strerror}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "owner": {"type": "str", "required": True},
            "group": {"type": "str", "required": True},
            "directories": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    changed_files, diffs = [], []
    for path in params["directories"]:
        attrs = module.load_file_common_arguments(
            {"path": path, "owner": params["owner"], "group": params["group"], "mode": "0755"})
        if not os.path.isdir(path):
            changed_files.append(path)
            if not module.check_mode:
                os.makedirs(path, mode=0o755, exist_ok=True)
                module.set_fs_attributes_if_different(attrs, False)
        elif module.set_fs_attributes_if_different(attrs, False):
            changed_files.append(path)
    for entry in params["files"]:
        dest, content, mode = entry.get("dest"), entry.get("content"), entry.get("mode")
        if not (isinstance(dest, str) and os.path.isabs(dest) and isinstance(content, str)
                and isinstance(mode, str)):
            module.fail_json(
                msg=f"each file needs an absolute dest, a content and a mode: {dest!r}")
        data = content.encode("utf-8")
        before = _current(module, dest)
        attrs = module.load_file_common_arguments(
            {"path": dest, "owner": params["owner"], "group": params["group"], "mode": mode})
        if before == data:
            if module.set_fs_attributes_if_different(attrs, False, diff=None):
                changed_files.append(dest)
            continue
        changed_files.append(dest)
        if module._diff:
            diffs.append({
                "before_header": dest, "after_header": dest,
                "before": "" if before is None else before.decode("utf-8", "replace"),
                "after": content,
            })
        if module.check_mode:
            continue
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".sop_files.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # Owner and mode set before the rename: the file never shows with others.
            module.set_fs_attributes_if_different({**attrs, "path": tmp}, False)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    module.exit_json(changed=bool(changed_files), changed_files=changed_files,
                     diff=diffs)


if __name__ == "__main__":
    main()
