#!/bin/bash
# Runs the OCI runtime-tools validation suite (../shared/conformance/runtime-tools.sh)
# against berth-runtime in both suite versions and checks the result against
# tests/conformance/expected-pass.txt.
#
#   scripts/conformance.sh            berth-runtime only, then the check (CI)
#   scripts/conformance.sh --peers    also runc and crun, side by side
#
# Results: /tmp/berth-conformance/results/<suite>/<runtime>/summary.txt
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runner=${RUNTIME_TOOLS_SH:-$top/../shared/conformance/runtime-tools.sh}
if [ ! -f "$runner" ]; then
  echo "conformance: runner not found at $runner (set RUNTIME_TOOLS_SH)" >&2
  exit 2
fi
. "$(dirname "$runner")/runtime-tools.conf"
export PATH=$PATH:/usr/local/go/bin

runtimes=("berth-runtime=$top/bin/berth-runtime")
if [ "${1:-}" = "--peers" ]; then
  runtimes+=("runc=$(command -v runc)" "crun=$(command -v crun)")
fi
declare -A version=([master]=$RT_TOOLS_DEFAULT [spec11]=$RT_TOOLS_SPEC11)
out=/tmp/berth-conformance/results
for suite in master spec11; do
  for rt in "${runtimes[@]}"; do
    name=${rt%%=*} bin=${rt#*=}
    echo "== $suite: $name" >&2
    RT_TOOLS_VERSION=${version[$suite]} bash "$runner" "$bin" "$out/$suite/$name" >/dev/null 2>"$out.$suite.$name.log" ||
      true
    tail -1 "$out/$suite/$name/summary.txt" >&2
  done
done

if [ ${#runtimes[@]} -gt 1 ]; then
  printf '\n%-32s' program; for suite in master spec11; do for rt in "${runtimes[@]}"; do printf ' %-16s' "${rt%%=*}@$suite"; done; done; echo
  for p in $(awk 'NR>1 && $2 ~ /^[0-9]+$/ {print $1}' "$out/master/berth-runtime/summary.txt"); do
    printf '%-32s' "$p"
    for suite in master spec11; do for rt in "${runtimes[@]}"; do
      printf ' %-16s' "$(awk -v p="$p" '$1==p { print ($3==0 && $5==0) ? "pass" : "FAIL" }' "$out/$suite/${rt%%=*}/summary.txt")"
    done; done; echo
  done
fi

fail=0
while read -r prog suites; do
  case "$prog" in ''|'#'*) continue;; esac
  for suite in $suites; do
    line=$(awk -v p="$prog" '$1==p' "$out/$suite/berth-runtime/summary.txt")
    set -- $line
    if [ -z "$line" ] || [ "$3" != 0 ] || [ "$5" != 0 ]; then
      echo "conformance: $prog failed in the $suite suite: $line (see $out/$suite/berth-runtime/$prog.tap)" >&2
      fail=$((fail+1))
    fi
  done
done < "$top/tests/conformance/expected-pass.txt"
total=$(grep -cv '^#\|^$' "$top/tests/conformance/expected-pass.txt")
echo "conformance: $total required programs checked in their suites, $fail failures"
[ $fail -eq 0 ]
