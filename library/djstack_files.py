#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Write several small files in one module run.

ansible.builtin.copy and template cost two module runs per file even when nothing changes
(a stat, then the file module for the attributes): on a no-op converge that is most of the
time a role spends (bench/RESULTS.md). This module takes a role's small files as a list and
settles them all in one run, with the same guarantees: each file is written atomically, a
file with `validate` is checked in a scratch copy beside it before it goes live, and when
any check fails nothing of the task goes live. Check mode and --diff work as with template.
"""

DOCUMENTATION = r"""
module: djstack_files
short_description: Write or remove several small files in one run
description:
  - Every file is compared with its wanted content; changed ones are staged in a scratch copy
    beside their destination, every C(validate) command runs on the staged copies, and only
    when all pass are they moved into place (atomically, one by one). Then owner, group and
    mode are set.
  - Returns C(changed_files), the destinations that changed, so that handlers can act only on
    their own file.
options:
  directories:
    description: Directories the files go into, created when missing, their owner, group and mode kept.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      owner: {description: Owner., type: str, default: root}
      group: {description: Group., type: str, default: root}
      mode: {description: Mode., type: str, default: "0755"}
  files:
    description: The files, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      dest: {description: Absolute path., type: path, required: true}
      content: {description: The wanted content (text). Required unless state is absent., type: str}
      state: {description: present or absent., type: str, default: present, choices: [present, absent]}
      owner: {description: Owner., type: str, default: root}
      group: {description: Group., type: str, default: root}
      mode: {description: Mode (an octal string such as "0644")., type: str, default: "0644"}
      validate: {description: A command run on the staged copy (%s is its path); non-zero fails the task., type: str}
      backup:
        description: Keep the file as it was in a timestamped copy beside it before it is replaced (returned in C(backup_files)).
        type: bool
        default: false
      secret:
        description:
          - The content is a secret (a key, a password file). It is kept out of --diff and out of
            everything the module returns, so the task needs no no_log and the other files' diffs
            stay visible.
        type: bool
        default: false
"""

RETURN = r"""
changed_files:
  description: Destinations written, removed or given new attributes.
  returned: always
  type: list
  elements: str
backup_files:
  description: For each replaced file with C(backup), the path of the copy of what it held before.
  returned: always
  type: dict
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

FILE_SPEC = dict(
    dest=dict(type="path", required=True),
    content=dict(type="str"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    owner=dict(type="str", default="root"),
    group=dict(type="str", default="root"),
    mode=dict(type="str", default="0644"),
    validate=dict(type="str"),
    backup=dict(type="bool", default=False),
    secret=dict(type="bool", default=False),
)


DIR_SPEC = dict(
    path=dict(type="path", required=True),
    owner=dict(type="str", default="root"),
    group=dict(type="str", default="root"),
    mode=dict(type="str", default="0755"),
)


def _attributes(module, path, item):
    return module.load_file_common_arguments(dict(path=path, owner=item["owner"], group=item["group"], mode=item["mode"]))


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


class FilesModule(AnsibleModule):
    def _log_invocation(self):
        # AnsibleModule logs every argument to the host's journal, contents and secrets
        # included, unless the whole task is no_log (which would also hide every diff): log
        # the destinations only.
        self.log("Invoked for " + " ".join(item["dest"] for item in self.params["files"]))


def main():
    module = FilesModule(
        argument_spec=dict(directories=dict(type="list", elements="dict", default=[], options=DIR_SPEC),
                           files=dict(type="list", elements="dict", required=True, options=FILE_SPEC)),
        supports_check_mode=True,
    )
    changed_files, diffs, plans, backups = [], [], [], {}
    try:
        for item in module.params["directories"]:
            directory = item["path"]
            if not os.path.isdir(directory):
                changed_files.append(directory)
                if module.check_mode:
                    continue
                os.makedirs(directory, mode=0o700)
            if module.set_fs_attributes_if_different(_attributes(module, directory, item), False) \
                    and directory not in changed_files:
                changed_files.append(directory)
        listed = [item["path"] for item in module.params["directories"]]
        # Secrets are masked wherever they would appear in the result, the echoed arguments included.
        for item in module.params["files"]:
            if item["secret"] and item["content"]:
                module.no_log_values.add(item["content"])
        for item in module.params["files"]:
            dest = item["dest"]
            if item["state"] == "present" and item["content"] is None:
                module.fail_json(msg=f"{dest}: content is required unless state is absent")
            old = _read(dest)
            new = None if item["state"] == "absent" else to_bytes(item["content"], errors="surrogate_or_strict")
            plan = dict(item=item, old=old, new=new, staged=None)
            plans.append(plan)
            if old == new:
                continue
            changed_files.append(dest)
            if module._diff:
                shown = not item["secret"]
                diffs.append(dict(
                    before_header=dest, after_header=dest,
                    before=(to_text(old, errors="surrogate_or_replace") if shown else "(content hidden)\n") if old is not None else "",
                    after=(to_text(new, errors="surrogate_or_replace") if shown else "(content hidden)\n") if new is not None else ""))
            if new is None:
                continue
            directory = os.path.dirname(dest)
            if not os.path.isdir(directory):  # also in check mode, where listed directories are missing
                if module.check_mode and directory in listed:
                    continue
                module.fail_json(msg=f"{dest}: the directory {directory} does not exist")
            if module.check_mode:
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=directory)
            plan["staged"] = tmp
            with os.fdopen(fd, "wb") as handle:
                handle.write(new)
            if item["validate"]:
                if "%s" not in item["validate"]:
                    module.fail_json(msg=f"{dest}: validate must contain %s")
                rc, out, err = module.run_command(item["validate"] % tmp)
                if rc != 0:
                    module.fail_json(msg=f"{dest}: failed to validate, nothing was changed",
                                     rc=rc, stdout=out, stderr=err, failed_file=dest)
            # The staged copy gets its final owner and mode before it goes live.
            module.set_fs_attributes_if_different(_attributes(module, tmp, item), False)
        for plan in plans:
            item, new, dest = plan["item"], plan["new"], plan["item"]["dest"]
            if plan["old"] != new and not module.check_mode:
                if item["backup"] and plan["old"] is not None:
                    backups[dest] = module.backup_local(dest)
                if new is None:
                    os.unlink(dest)
                else:
                    module.atomic_move(plan["staged"], dest, keep_dest_attrs=False)
            if new is not None and os.path.exists(dest):
                if module.set_fs_attributes_if_different(_attributes(module, dest, item), False) and dest not in changed_files:
                    changed_files.append(dest)
    except OSError as err:
        module.fail_json(msg=to_native(err))
    finally:
        # Scratch copies that did not go live (a failed check, an error).
        for plan in plans:
            if plan["staged"] and os.path.exists(plan["staged"]):
                os.unlink(plan["staged"])
    result = dict(changed=bool(changed_files), changed_files=changed_files, backup_files=backups)
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
