"""The project's filters (ansible.cfg: filter_plugins; molecule: ANSIBLE_FILTER_PLUGINS)."""


def djstack_address(name, hostvars, override=None):
    """The address the other hosts reach inventory host `name` at: its `override` host
    variable when one is named and set (pgbackrest_host_name, ...), else its private_ip, else
    its ansible_host, else the name itself (also for a name outside the inventory)."""
    if name not in hostvars:
        return name
    host = hostvars[name]
    for key in ([override] if override else []) + ["private_ip", "ansible_host"]:
        if key in host and host[key] not in (None, ""):
            return str(host[key])
    return name


class FilterModule:
    def filters(self):
        return {"djstack_address": djstack_address}
