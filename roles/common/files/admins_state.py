# Compares the admin group, accounts and authorized_keys files with what the role wants
# (argv[1], JSON) and prints "as wanted" or the first difference. Read-only. The role runs
# its group/user/authorized_key tasks unless this says "as wanted", so the comparison is
# strict: anything it does not recognise counts as a difference. authorized_key writes a key
# without a comment with a trailing blank, hence the rstrip (the module parses both alike).
import grp
import json
import os
import pwd
import sys

wanted = json.loads(sys.argv[1])


def difference():
    try:
        members = grp.getgrnam(wanted["group"]).gr_mem
    except KeyError:
        return "group %s is missing" % wanted["group"]
    for user in wanted["users"]:
        name = user["name"]
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = None
        if not user["present"]:
            if entry is not None:
                return "%s exists and should not" % name
            continue
        if entry is None:
            return "%s is missing" % name
        if entry.pw_shell != user["shell"]:
            return "%s has shell %s" % (name, entry.pw_shell)
        if name not in members:
            return "%s is not in %s" % (name, wanted["group"])
        path = os.path.join(entry.pw_dir, ".ssh", "authorized_keys")
        try:
            with open(path, encoding="utf-8") as handle:
                lines = [line.rstrip() for line in handle.read().splitlines()]
        except FileNotFoundError:
            lines = []
        except (OSError, UnicodeError) as error:
            return "%s: %s" % (path, error)
        if lines != user["keys"]:
            return "%s holds other keys than the listed ones" % path
    return None


print(difference() or "as wanted")
