#!/usr/bin/env bash
# Edge benchmark on a converged lab, side by side in one run, wrk on the lab's client host:
#   1. `/` through the edge (nginx TLS + HTTP/1.1 keep-alive -> Varnish): a cache HIT after the first request
#   2. the same page straight from app1 (gunicorn), uncached
# The edge's per-client rate and connection limits would answer most of the load with 429:
# the edge is re-converged without them for the run, then put back.
# Usage: bench/edge.sh   (BENCH_SECONDS=15 BENCH_CONNECTIONS=32; LAB_NAME/LAB_NET_PREFIX pick the lab)
# Prints Markdown table rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" ANSIBLE_DEPRECATION_WARNINGS=false
seconds=${BENCH_SECONDS:-15}
conns=${BENCH_CONNECTIONS:-32}
site=${SITE_DOMAIN:-www.djstack.test}
log="$PWD/.lab/bench-edge"
mkdir -p "$log"

addr() { ansible "$1" -m ansible.builtin.debug -a var=ansible_host -o 2>/dev/null | sed 's/.*"ansible_host": "\([^"]*\)".*/\1/'; }

wrk_row() {  # label, URL, Host header
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

echo "| what | requests/s | p99 | non-2xx |"
echo "|---|---|---|---|"
ansible-playbook playbooks/edge.yml --tags nginx -e nginx_rate_limit=1000000r/s -e nginx_conn_limit=60000 \
  > "$log/unlimited.log" 2>&1
trap 'ansible-playbook playbooks/edge.yml --tags nginx > "$log/limited.log" 2>&1' EXIT
wrk_row "/ through the edge (Varnish HIT)" "https://$(addr edge1)/" "$site"
wrk_row "/ from app1 directly, uncached (gunicorn)" "http://$(addr app1):8000/" localhost
