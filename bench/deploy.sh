#!/usr/bin/env bash
# Rolling deploy benchmark on a converged lab (`make lab` first), in one run:
#   1. a changed release (a copy of app/ with one more CSS line), built before it is timed,
#      deployed with playbooks/deploy.yml, no load: total time and time per app host;
#   2. a broken release (its /readyz answers 503): time until the run ends, revert time per host;
#   3. `make rollback` under the deploy tests' load from the client host (tests/loadgen.py:
#      100 req/s mixed plus 10-20 s slow requests): failed requests and the load held;
#   4. back to the release built from app/.
# Usage: bench/deploy.sh   (LAB_NAME / LAB_NET_PREFIX pick the lab)
# Prints Markdown table rows for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$PWD/.lab/bench-deploy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$log"
# shellcheck source=bench/lib.sh
. bench/lib.sh
export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks
site=${SITE_DOMAIN:-www.djstack.test}

cp -r app "$work/changed"
echo "/* bench: a changed release */" >> "$work/changed/src/djdemo/core/static/core/site.css"
cp -r "$work/changed" "$work/broken"
sed -i 's/return _health_answer(checks, all(value == "ok" for value in checks.values()))/return _health_answer(checks, False)/' "$work/broken/src/djdemo/core/views.py"
grep -q 'return _health_answer(checks, False)' "$work/broken/src/djdemo/core/views.py"
for tree in changed broken; do
  ansible-playbook playbooks/build.yml -e "app_build_source=$work/$tree" > "$log/build-$tree.log" 2>&1
done

# times LOG: the total and, per host, the time its roll (or revert) took, from profile_tasks'
# timestamps ("Roll onto" / "Revert to" up to the next play or roll).
times() {
  python3 - "$1" <<'PY'
import re, sys, datetime
text = open(sys.argv[1]).read()
stamps = [(m.start(), datetime.datetime.strptime(m.group(1), "%d %B %Y  %H:%M:%S"))
          for m in re.finditer(r"^\w+ (\d+ \w+ \d+  \d\d:\d\d:\d\d) \+0000", text, re.M)]
def at(pos):  # the timestamp printed right after a task header
    return next(t for p, t in stamps if p > pos)
# (The include line names the host.)
marks = [(m.start(), m.group(1), re.compile(r"^included: \S+app_roll\.yml for (\S+)", re.M).search(text, m.start()).group(1))
         for m in re.finditer(r"^TASK \[(Roll|Revert) (?:onto|to) ", text, re.M)]
ends = [m.start() for m in re.finditer(r"^(PLAY \[|TASK \[(?:Roll|Revert) (?:onto|to) )", text, re.M)]
out = []
for pos, kind, host in marks:
    end = next((e for e in ends if e > pos), len(text))
    out.append(f"{kind.lower()} {host} {(at(end) - at(pos)).total_seconds():.0f} s")
print("total %.0f s; " % (stamps[-1][1] - stamps[0][1]).total_seconds() + ", ".join(out))
PY
}

echo "| what | result |"
echo "|---|---|"
ansible-playbook playbooks/deploy.yml -e "app_build_source=$work/changed" > "$log/changed.log" 2>&1
echo "| deploy of a changed release, 2 app hosts, no load | $(times "$log/changed.log") |"
if ansible-playbook playbooks/deploy.yml -e "app_build_source=$work/broken" > "$log/broken.log" 2>&1; then
  echo "the broken release was deployed: see $log/broken.log" >&2; exit 1
fi
echo "| deploy of a broken release (fails at app1's gate, reverts) | $(times "$log/broken.log") |"

ansible client1 -m ansible.builtin.copy -a "src=$PWD/tests/loadgen.py dest=/tmp/loadgen.py" > /dev/null
ansible client1 -m ansible.builtin.copy -a "src=$PWD/.lab/pki/${LAB_NAME:-djstack}/ca.crt dest=/tmp/loadgen-ca.crt" > /dev/null
ansible client1 -m ansible.builtin.shell -a "rm -f /tmp/loadgen.stop; nohup python3 /tmp/loadgen.py --address $(addr edge1) \
  --host $site --ca /tmp/loadgen-ca.crt --seconds 600 --stop-file /tmp/loadgen.stop --rate 100 --slow-every 2 \
  --slow-min 10 --slow-max 20 > /tmp/loadgen.json 2>&1 < /dev/null &" > /dev/null
sleep 3
make rollback > "$log/rollback.log" 2>&1
sleep 5
ansible client1 -m ansible.builtin.shell -a "touch /tmp/loadgen.stop; for i in \$(seq 60); do tail -c 2 /tmp/loadgen.json | grep -q '}' && break; sleep 1; done; cat /tmp/loadgen.json" \
  | sed -n '/^{/,/^}/p' > "$log/rollback-load.json"
python3 - "$log/rollback-load.json" "$(times "$log/rollback.log")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"| make rollback under load | {sys.argv[2]}; {d['requests']} requests at {d['rate']} req/s "
      f"({d['counts'].get('slow', 0)} slow), {d['failed']} failed |")
PY
ansible-playbook playbooks/deploy.yml > "$log/back.log" 2>&1
