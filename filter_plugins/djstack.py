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


def djstack_nft_rule(rule, groups, hostvars):
    """nftables lines (for the input chain of roles/common's ruleset) that accept `rule`:
    {name, port or ports, proto (tcp), from_groups, from_networks}. Each host of from_groups is named by
    its address (djstack_address); IPv4 and IPv6 sources get a line each. Sources that name no
    host yet open nothing (a comment says so)."""
    proto = rule.get("proto") or "tcp"
    from_groups = list(rule.get("from_groups") or [])
    from_networks = list(rule.get("from_networks") or [])
    sources = []
    for source in from_networks + [djstack_address(h, hostvars) for g in from_groups for h in groups.get(g, [])]:
        if source not in sources:
            sources.append(source)
    listed = [str(p) for p in rule["ports"]] if rule.get("ports") else [str(rule["port"])]
    ports = listed[0] if len(listed) == 1 else "{ " + ", ".join(listed) + " }"
    lines = [f"    # {rule['name']}: {proto}/{','.join(listed)} from {', '.join(from_groups + from_networks)}"]
    for family, chosen in (("ip", [s for s in sources if ":" not in s]), ("ip6", [s for s in sources if ":" in s])):
        if chosen:
            lines.append(f'    {family} saddr {{ {", ".join(chosen)} }} {proto} dport {ports} accept comment "{rule["name"]}"')
    if not sources:
        lines.append("    # (nothing opened: no host in those groups)")
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self):
        return {"djstack_address": djstack_address, "djstack_nft_rule": djstack_nft_rule}
