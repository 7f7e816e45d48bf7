#!/usr/bin/env bash
# Times the lab and site.yml side by side in one run, on a lab of its own:
#   lab creation (hosts from the existing base image), fresh converge, three no-op re-runs.
# Usage: bench/converge.sh            (BENCH_LAB_NAME / BENCH_LAB_NET to move it)
# Prints one Markdown table row set; paste it into bench/RESULTS.md with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
export LAB_NAME="${BENCH_LAB_NAME:-djstack-bench}" LAB_NET_PREFIX="${BENCH_LAB_NET:-10.231.8}"
log="$PWD/.lab/bench-$LAB_NAME"
mkdir -p "$log"

timed() {  # name, command...: runs it, prints elapsed seconds
  local name=$1; shift
  local t0; t0=$(date +%s%N)
  "$@" > "$log/$name.log" 2>&1 || { echo "$name failed, see $log/$name.log" >&2; exit 1; }
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

ansible-playbook playbooks/lab.yml -e lab_state=absent -e lab_purge_kept_storage=true > "$log/destroy.log" 2>&1
lab=$(timed lab ansible-playbook playbooks/lab.yml)
fresh=$(timed fresh ansible-playbook site.yml)
# Three no-op runs: one run varies by several seconds on a shared 2-core machine; the
# median is the figure, all three are printed.
noops=()
for i in 1 2 3; do
  noops+=("$(timed "noop$i" ansible-playbook site.yml)")
done
python3 - "$lab" "$fresh" "${noops[@]}" <<'PY'
import statistics, sys
lab, fresh, *noops = (int(v) / 1000 for v in sys.argv[1:])
noop = statistics.median(noops)
print(f"| lab creation (9 hosts, image present) | {lab:.0f} s |")
print(f"| fresh converge, site.yml | {fresh:.0f} s |")
print(f"| no-op re-run, site.yml (median of {', '.join(f'{n:.0f}' for n in noops)} s) | {noop:.0f} s |")
print(f"| no-op / fresh | {noop / fresh:.2f} |")
PY
for i in 1 2 3; do
  grep -E 'changed=' "$log/noop$i.log" | awk -v run="$i" '{print "noop" run " recap:", $1, $4}'
done | sort -u | head -40
noop_changed=0
grep -qE 'changed=[1-9]' "$log"/noop[123].log && noop_changed=1
[ "${KEEP_BENCH:-0}" = 1 ] || ansible-playbook playbooks/lab.yml -e lab_state=absent -e lab_purge_kept_storage=true > "$log/destroy.log" 2>&1
if [ "$noop_changed" = 1 ]; then echo "a no-op run changed something: $log/noop*.log" >&2; exit 1; fi
