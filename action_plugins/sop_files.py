"""Action plugin: render several role templates and write them in one module call.

Each destination's template is found where the roles keep them: the path
without its leading slash plus ``.j2`` in the role's templates folder
(``/etc/postfix/virtual_domains`` from ``templates/etc/postfix/virtual_domains.j2``).
Renders each as `ansible.builtin.template` does (the task's variables,
trim_blocks), then hands every file to the sop_files module at once: one
remote round trip for a role's whole set of small tables, not one per file.
"""

from __future__ import annotations

import os

# The variables ansible.builtin.template adds (ansible_managed, template_path,
# ...). Private in ansible-core, which requirements.txt pins.
from ansible._internal._templating import _template_vars
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

DOCUMENTATION = r"""
name: sop_files
short_description: Render several templates and write them in one call
options:
  dest:
    description:
      - The files. Each is an absolute path, whose template is templates/<path>.j2,
        or a mapping with path and, when they differ from that and from the
        task's mode, src (the template) and mode.
    type: list
    elements: raw
    required: true
  owner: {description: Owner of every file and directory., type: str, required: true}
  group: {description: Group of every file and directory., type: str, required: true}
  mode: {description: Mode of the files (octal string)., type: str, required: true}
  directories:
    description: Absolute paths of folders made first (mode 0755), for the files.
    type: list
    elements: path
    default: []
"""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dest", "owner", "group", "mode", "directories"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        dests = args.get("dest")
        if not isinstance(dests, list) or not dests:
            raise AnsibleActionFail("dest: a list of absolute paths is required")
        for key in ("owner", "group", "mode"):
            if not isinstance(args.get(key), str) or not args[key]:
                raise AnsibleActionFail(f"{key}: required, a string")

        directories = args.get("directories") or []
        if not isinstance(directories, list) or not all(
                isinstance(d, str) and os.path.isabs(d) for d in directories):
            raise AnsibleActionFail(f"directories: absolute paths only, not {directories!r}")

        rendered = []
        for entry in dests:
            if isinstance(entry, str):
                entry = {"path": entry}
            if not isinstance(entry, dict) or not set(entry) <= {"path", "src", "mode"}:
                raise AnsibleActionFail(
                    f"dest: {entry!r} is neither a path nor {{path, src, mode}}")
            dest = entry.get("path")
            if not isinstance(dest, str) or not os.path.isabs(dest):
                raise AnsibleActionFail(f"dest: {dest!r} is not an absolute path")
            src = entry.get("src") or dest.lstrip("/") + ".j2"
            rendered.append({"dest": dest, "mode": str(entry.get("mode") or args["mode"]),
                             "content": self._render(src, dest, task_vars)})

        module_result = self._execute_module(
            module_name="sop_files",
            module_args={"files": rendered, "owner": args["owner"], "group": args["group"],
                         "directories": directories},
            task_vars=task_vars,
        )
        # The files' contents are in the module's arguments: not in the result.
        module_result.pop("invocation", None)
        result.update(module_result)
        return result

    def _render(self, src: str, dest: str, task_vars: dict) -> str:
        try:
            source = self._find_needle("templates", src)
        except AnsibleError as exc:
            raise AnsibleActionFail(str(exc)) from exc
        data = trust_as_template(self._loader.get_text_file_contents(source))
        searchpath = [*task_vars.get("ansible_search_path", []), self._loader._basedir,
                      os.path.dirname(source)]
        searchpath = [q for p in searchpath for q in (os.path.join(p, "templates"), p)]
        variables = {**task_vars, **_template_vars.generate_ansible_template_vars(
            path=src, fullpath=source, dest_path=dest,
            include_ansible_managed="ansible_managed" not in task_vars)}
        templar = self._templar.copy_with_new_env(searchpath=searchpath,
                                                  available_variables=variables)
        # The same settings as ansible.builtin.template's defaults.
        text = templar.template(data, escape_backslashes=False,
                                overrides={"trim_blocks": True, "lstrip_blocks": False,
                                           "newline_sequence": "\n"})
        return text or ""
