#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Keep several systemd units enabled and running in one module run.

ansible.builtin.systemd_service settles one unit per module run, and each module run costs a
host about 0.2 CPU-s whatever it does (bench/RESULTS.md): a role that keeps four services
running pays four runs on every converge, most of them finding nothing to do. This module
reads every unit's state with one `systemctl show` and acts only on the units that differ.
"""

DOCUMENTATION = r"""
module: djstack_units
short_description: Keep several systemd units enabled and started in one run
description:
  - Reads the load, active and unit-file state of every listed unit with one C(systemctl show),
    then enables and starts only those that are not. Check mode reports what it would do.
  - Returns C(changed_units), one line per action (C(enable NAME), C(start NAME)).
options:
  daemon_reload:
    description: Run C(systemctl daemon-reload) first (unit files changed). Not a change by itself.
    type: bool
    default: false
  units:
    description: The units, in the order they are started.
    type: list
    elements: dict
    required: true
    suboptions:
      name: {description: The unit (C(.service) is implied without a suffix)., type: str, required: true}
      enabled: {description: Enabled at boot; unset leaves it as it is., type: bool}
      state: {description: C(started) starts it when it is not active; unset leaves it as it is., type: str, choices: [started]}
"""

RETURN = r"""
changed_units:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

UNIT_SPEC = dict(
    name=dict(type="str", required=True),
    enabled=dict(type="bool"),
    state=dict(type="str", choices=["started"]),
)
# `systemctl is-enabled` answers 0 for these unit-file states: the unit starts at boot, or
# needs no enabling (static units are pulled in by others).
ENABLED_STATES = {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"}
RUNNING_STATES = {"active", "activating", "reloading"}


def _states(module, systemctl, names):
    rc, out, err = module.run_command([systemctl, "show", "--property=Id,LoadState,ActiveState,UnitFileState", "--", *names])
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip()}", rc=rc, stdout=out, stderr=err)
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.strip().split("\n\n")]
    if len(blocks) != len(names):
        module.fail_json(msg=f"systemctl show answered for {len(blocks)} of {len(names)} units", stdout=out)
    return blocks


def main():
    module = AnsibleModule(
        argument_spec=dict(daemon_reload=dict(type="bool", default=False),
                           units=dict(type="list", elements="dict", required=True, options=UNIT_SPEC)),
        supports_check_mode=True,
    )
    systemctl = module.get_bin_path("systemctl", required=True)
    units = module.params["units"]
    names = [u["name"] if "." in u["name"] else u["name"] + ".service" for u in units]
    if module.params["daemon_reload"] and not module.check_mode:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    changed_units = []
    for unit, name, state in zip(units, names, _states(module, systemctl, names)):
        if state.get("LoadState") != "loaded":
            if module.check_mode:  # a unit the same run would install first
                changed_units.extend(f"{verb} {name}" for verb, wanted in
                                     (("enable", unit["enabled"]), ("start", unit["state"])) if wanted)
                continue
            module.fail_json(msg=f"{name}: no such unit (LoadState {state.get('LoadState', '?')})",
                             changed_units=changed_units)
        actions = []
        if unit["enabled"] is True and state.get("UnitFileState") not in ENABLED_STATES:
            actions.append("enable")
        if unit["enabled"] is False and state.get("UnitFileState") in ENABLED_STATES - {"static", "generated", "transient"}:
            actions.append("disable")
        if unit["state"] == "started" and state.get("ActiveState") not in RUNNING_STATES:
            actions.append("start")
        for verb in actions:
            changed_units.append(f"{verb} {name}")
            if not module.check_mode:
                rc, out, err = module.run_command([systemctl, verb, "--", name])
                if rc != 0:
                    module.fail_json(msg=f"systemctl {verb} {name} failed: {err.strip()}", rc=rc,
                                     stdout=out, stderr=err, changed_units=changed_units)
    module.exit_json(changed=bool(changed_units), changed_units=changed_units)


if __name__ == "__main__":
    main()
