# Shared by the bench scripts: sourced after they set $log, $seconds and $conns.
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_DEPRECATION_WARNINGS=false

# addr HOST: the inventory host's address, as Ansible renders it.
addr() { ansible "$1" -m ansible.builtin.debug -a var=ansible_host -o 2>/dev/null | sed 's/.*"ansible_host": "\([^"]*\)".*/\1/'; }

# wrk_run LABEL URL HOST_HEADER: one wrk run from client1; prints "| label | req/s | p99 | non-2xx |".
wrk_run() {
  ansible client1 -m ansible.builtin.command -a \
    "wrk -t2 -c$conns -d${seconds}s --latency -H 'Host: $3' $2" > "$log/$1.log" 2>&1
  python3 - "$1" "$log/$1.log" <<'PY'
import re, sys
text = open(sys.argv[2]).read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
p99 = re.search(r"99%\s+([\d.]+\w+)", text).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"| {sys.argv[1]} | {float(rps):.0f} | {p99} | {errors.group(1) if errors else 0} |")
PY
}
