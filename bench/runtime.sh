#!/bin/bash
# Runtime benchmark, berth-runtime against runc and crun in one run, in
# rounds that interleave the runtimes, all in one private mount namespace
# where the cgroup v2 mount of a hybrid host is hidden (crun 1.8 refuses
# hybrid hosts; every runtime runs under the same conditions):
#   - N sequential containers of /bin/true: create, start, wait, delete (one
#     `run` each);
#   - N/4 such containers started 50 ms apart (as one at a time through a
#     daemon), timing only the `run`s;
#   - N `exec /bin/true` into a running container;
#   - N pause + resume pairs of a running container;
#   - the peak RSS of one `run`.
#
# usage: bench/runtime.sh [N] [ROUNDS]     (as root; make build first)
set -euo pipefail
N=${1:-200}
ROUNDS=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
BERTH=${BERTH_RUNTIME:-$here/../bin/berth-runtime}
[ -x "$BERTH" ] || { echo "build berth-runtime first (make build)" >&2; exit 2; }

if [ -z "${BENCH_INNER:-}" ]; then
  exec env BENCH_INNER=1 unshare --mount --propagation private bash "$0" "$@"
fi
umount /sys/fs/cgroup/unified 2>/dev/null || true

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for a in true sh; do ln -s busybox "$bundle/rootfs/bin/$a"; done
"$BERTH" spec --bundle "$bundle"
# The same config for every runtime: ociVersion 1.0.2 (crun 1.8 rejects
# later versions), no terminal, /bin/true.
sed -i 's/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/; s/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' "$bundle/config.json"

declare -A RT=([berth-runtime]=$BERTH [runc]=$(command -v runc) [crun]=$(command -v crun))
names=(berth-runtime runc crun)
cleanup() {
  for n in "${names[@]}"; do
    "${RT[$n]}" --root "$work/root-$n" delete --force "sleeper-$n" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
declare -A total
for n in "${names[@]}"; do total[$n]=""; done

now() { date +%s%N; }
for r in $(seq "$ROUNDS"); do
  for n in "${names[@]}"; do
    bin=${RT[$n]}; root=$work/root-$n
    "$bin" --root "$root" run --bundle "$bundle" warm-$r >/dev/null   # warm caches
    t0=$(now)
    for i in $(seq "$N"); do
      "$bin" --root "$root" run --bundle "$bundle" "c$r-$i" >/dev/null
    done
    t1=$(now)
    total[$n]+="$(( (t1 - t0) / N / 1000 )) "
  done
done

# The same, one container every 50 ms, as containers started one at a time
# through a daemon are: back-to-back runs share the kernel's work between
# them (a cgroup migration's RCU grace period), spaced ones each pay it.
declare -A spaced
for n in "${names[@]}"; do spaced[$n]=""; done
for r in $(seq "$ROUNDS"); do
  for n in "${names[@]}"; do
    bin=${RT[$n]}; root=$work/root-$n
    sum=0
    for i in $(seq $(( (N + 3) / 4 ))); do
      sleep 0.05
      t0=$(now)
      "$bin" --root "$root" run --bundle "$bundle" "s$r-$i" >/dev/null
      t1=$(now)
      sum=$(( sum + t1 - t0 ))
    done
    spaced[$n]+="$(( sum / ((N + 3) / 4) / 1000 )) "
  done
done

# exec and pause/resume against one running container per runtime.
sleeper=$work/sleeper
cp -a "$bundle" "$sleeper"
sed -i 's/"\/bin\/true"/"\/bin\/sleep", "1000"/' "$sleeper/config.json"
ln -s busybox "$sleeper/rootfs/bin/sleep"
declare -A exect pauset
for n in "${names[@]}"; do exect[$n]=""; pauset[$n]=""; done
for n in "${names[@]}"; do
  "${RT[$n]}" --root "$work/root-$n" run --detach --bundle "$sleeper" "sleeper-$n" >/dev/null
done
for r in $(seq "$ROUNDS"); do
  for n in "${names[@]}"; do
    bin=${RT[$n]}; root=$work/root-$n
    t0=$(now)
    for i in $(seq "$N"); do "$bin" --root "$root" exec "sleeper-$n" /bin/true; done
    t1=$(now)
    for i in $(seq "$N"); do "$bin" --root "$root" pause "sleeper-$n"; "$bin" --root "$root" resume "sleeper-$n"; done
    t2=$(now)
    exect[$n]+="$(( (t1 - t0) / N / 1000 )) "
    pauset[$n]+="$(( (t2 - t1) / N / 1000 )) "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
report() {  # report TITLE ARRAY-NAME
  local -n arr=$2
  echo "$1 (median of rounds, microseconds)"
  declare -A m
  for n in "${names[@]}"; do
    m[$n]=$(echo "${arr[$n]}" | median)
    printf '  %-14s %8d us   (rounds: %s)\n' "$n" "${m[$n]}" "${arr[$n]}"
  done
  awk -v b="${m[berth-runtime]}" -v r="${m[runc]}" -v c="${m[crun]}" 'BEGIN {
    printf "  runc / berth-runtime = %.2fx   crun / berth-runtime = %.2fx\n", r / b, c / b }'
}
echo "$N operations per round, $ROUNDS rounds"
report "container run: create, start, wait, delete of /bin/true" total
report "container run, one every 50 ms" spaced
report "exec /bin/true into a running container" exect
report "pause + resume" pauset

# Peak RSS of one run, from GNU time: the largest resident set of the runtime
# process (each process's high-water mark, children included once waited for).
echo "peak RSS of one run (KiB, GNU time %M)"
for n in "${names[@]}"; do
  printf '  %-14s %8d KiB\n' "$n" \
    "$(/usr/bin/time -f %M "${RT[$n]}" --root "$work/root-$n" run --bundle "$bundle" "rss-$n" 2>&1 >/dev/null | tail -1)"
done
