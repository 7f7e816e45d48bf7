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
seconds=${BENCH_SECONDS:-15}
conns=${BENCH_CONNECTIONS:-32}
site=${SITE_DOMAIN:-www.djstack.test}
log="$PWD/.lab/bench-edge"
mkdir -p "$log"

# shellcheck source=bench/lib.sh
. bench/lib.sh

echo "| what | requests/s | p99 | non-2xx |"
echo "|---|---|---|---|"
ansible-playbook playbooks/edge.yml --tags nginx -e nginx_rate_limit=1000000r/s -e nginx_conn_limit=60000 \
  > "$log/unlimited.log" 2>&1
trap 'ansible-playbook playbooks/edge.yml --tags nginx > "$log/limited.log" 2>&1' EXIT
wrk_run "/ through the edge (Varnish HIT)" "https://$(addr edge1)/" "$site"
wrk_run "/ from app1 directly, uncached (gunicorn)" "http://$(addr app1):8000/" localhost
