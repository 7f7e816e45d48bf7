#!/usr/bin/env bash
# One dependency down under load, each for longer than the suite's 30 s, on a converged lab
# (`make lab`, or KEEP_BENCH=1 bench/converge.sh with LAB_NAME/LAB_NET_PREFIX exported).
# tests/loadgen.py on client1 through the edge, 30 requests/s (20% cached pages, 70% uncached
# /status, 10% writes), one load run per outage:
#   1. db2's PostgreSQL (the read replica) stopped OUTAGE seconds (default 60);
#   2. cache1's Redis stopped OUTAGE seconds;
#   3. backup1's pgBackRest server stopped BACKUP_OUTAGE seconds (default 600), pg_wal on db1
#      sampled every 10 s; then the archive must catch up and a differential backup succeed.
# Prints Markdown table rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$PWD/.lab/bench-failures"
mkdir -p "$log"
# shellcheck source=bench/lib.sh
. bench/lib.sh
site=${SITE_DOMAIN:-www.djstack.test}
outage=${OUTAGE:-60}
backup_outage=${BACKUP_OUTAGE:-600}
pg_wal=/var/lib/postgresql/15/main/pg_wal

ansible client1 -m ansible.builtin.copy -a "src=$PWD/tests/loadgen.py dest=/tmp/loadgen.py" > /dev/null
ansible client1 -m ansible.builtin.copy -a "src=$PWD/.lab/pki/${LAB_NAME:-djstack}/ca.crt dest=/tmp/loadgen-ca.crt" > /dev/null

load_start() {
  ansible client1 -m ansible.builtin.shell -a "rm -f /tmp/loadgen.stop; nohup python3 /tmp/loadgen.py --address $(addr edge1) \
    --host $site --ca /tmp/loadgen-ca.crt --seconds 3600 --stop-file /tmp/loadgen.stop --rate 30 --mix 20,70,10 \
    > /tmp/loadgen.json 2>&1 < /dev/null &" > /dev/null
  sleep 3
}

# load_stop LABEL EXTRA: stops the load, prints "| label | requests | failed (reasons) | extra |".
load_stop() {
  sleep 5
  ansible client1 -m ansible.builtin.shell -a "touch /tmp/loadgen.stop; for i in \$(seq 60); do tail -c 2 /tmp/loadgen.json | grep -q '}' && break; sleep 1; done; cat /tmp/loadgen.json" \
    | sed -n '/^{/,/^}/p' > "$log/$1.json"
  python3 - "$log/$1.json" "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
reasons = "; ".join(f"{k}: {v}" for k, v in d["failures"].items()) or "none"
print(f"| {sys.argv[2]} | {d['requests']} at {d['rate']} req/s | {d['failed']} ({reasons}) | {sys.argv[3]} |")
PY
}

echo "| what is down | requests | failed | more |"
echo "|---|---|---|---|"
for target in "db2 postgresql@15-main replica" "cache1 redis-server redis"; do
  set -- $target
  load_start
  ansible "$1" -b -m ansible.builtin.command -a "systemctl stop $2" > /dev/null
  sleep "$outage"
  ansible "$1" -b -m ansible.builtin.command -a "systemctl start $2" > /dev/null
  load_stop "$3 ($1 $2) stopped ${outage} s" "-"
done

load_start
ansible backup1 -b -m ansible.builtin.command -a "systemctl stop pgbackrest" > /dev/null
largest=0
end=$(( $(date +%s) + backup_outage ))
while [ "$(date +%s)" -lt "$end" ]; do
  size=$(ansible db1 -b -m ansible.builtin.shell -a "du -sm $pg_wal | cut -f1" 2>/dev/null | tail -1)
  [ "$size" -gt "$largest" ] 2>/dev/null && largest=$size
  sleep 10
done
ansible backup1 -b -m ansible.builtin.command -a "systemctl start pgbackrest" > /dev/null
load_stop "backup host's pgBackRest stopped ${backup_outage} s" "pg_wal on db1 at most ${largest} MB"
segment=$(ansible db1 -b -m ansible.builtin.shell -a "runuser -u postgres -- psql -XAtc 'SELECT pg_walfile_name(pg_switch_wal())'" | tail -1)
caught_up=no
for _ in $(seq 120); do
  last=$(ansible db1 -b -m ansible.builtin.shell -a "runuser -u postgres -- psql -XAtc 'SELECT last_archived_wal FROM pg_stat_archiver'" | tail -1)
  if [[ "$last" > "$segment" || "$last" == "$segment" ]]; then caught_up=yes; break; fi
  sleep 1
done
if ansible-playbook playbooks/backup.yml -e backup_type=diff > "$log/backup.log" 2>&1; then backup=ok; else backup="failed, see $log/backup.log"; fi
echo "| after the backup host is back | - | - | archive caught up: $caught_up; differential backup: $backup |"
