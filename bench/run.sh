#!/bin/bash
# Berth's run benchmark: the time of
#   berth run --rm IMAGE true                         (berthd, berth-shim, berth-runtime)
#   podman run --rm --network none IMAGE true         (podman 4, conmon, its default runtime)
#   docker run --rm --network none IMAGE true         (Debian's dockerd + containerd, runc)
# timed by hyperfine in one run with warm-ups, each engine with private
# roots under one temporary directory, and the memory of each engine:
# VmRSS (/proc/PID/status) and PSS (/proc/PID/smaps_rollup) of idle berthd
# after the runs, of dockerd and its containerd, and of the per-container
# process of a detached `sleep 100` container (berth-shim,
# containerd-shim-runc-v2, podman's conmon).
#
#   bench/run.sh [--runs N] [--rounds N] [--warmup N] [--write-docs]
#
# The runs are split into rounds (default 30 runs in 5 rounds, 2 warm-ups
# per command in each round); every round times all three commands, so a
# change of the machine's load weighs on all three alike.
#
# The image is the busybox of the test fixtures, written as a docker-archive
# tarball by bench/run and loaded into every engine. dockerd runs with the
# vfs storage driver, cgroupfs under a private cgroup parent, no bridge and
# no iptables; podman with vfs, cgroupfs, the file events backend and runc
# (its default crun refuses this host's hybrid cgroup layout). With
# --write-docs the results and this exact command go to
# docs/benchmarks-run.md (its hand-written analysis, from the heading "Where
# the time goes" on, is kept). Needs root. Everything the script starts is ended
# by PID, and the mounts and cgroups its containers leave are removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${BERTH_BIN:-$repo/bin}
export PATH=/usr/local/go/bin:$PATH
docker_cli=${DOCKER_CLI:-/usr/local/bin/docker}
image=berth-bench/busybox:latest

runs=30
rounds=5
warmup=2
write_docs=0
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cmdline="bench/run.sh --runs $runs --rounds $rounds --warmup $warmup"

[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root" >&2; exit 1; }
for b in berthd berth berth-shim berth-runtime; do
  [ -x "$bin/$b" ] || { echo "$bin/$b missing: run make build (or set BERTH_BIN)" >&2; exit 1; }
done
for t in hyperfine podman conmon dockerd containerd containerd-shim-runc-v2 runc unshare curl; do
  command -v "$t" >/dev/null 2>&1 || { echo "bench/run.sh needs $t" >&2; exit 1; }
done
[ -x "$docker_cli" ] || { echo "docker CLI $docker_cli missing (set DOCKER_CLI)" >&2; exit 1; }

load_start=$(uptime)
# Short: berth-shim and containerd put unix sockets under the exec roots,
# and a socket path is limited to 107 bytes.
work=$(mktemp -d /run/brb.XXXXXX)
tag=$(basename "$work" | tr -c 'a-zA-Z0-9\n' '-')
cg_docker=berth-bench-$tag
pids=()          # daemons started here, ended in this order's reverse
created_host=()  # host directories dockerd needs that did not exist before
for p in /run/docker /run/containerd; do [ -e "$p" ] || created_host+=("$p"); done
start_mark=$work/.start
touch "$start_mark"

log() { echo "== $*" >&2; }

# stop_pid PID: SIGTERM, wait up to 20 s, then SIGKILL.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# procs_with EXE_BASENAME PATTERN: PIDs whose comm is EXE_BASENAME (as far as
# comm's 15 bytes go) and whose command line contains PATTERN.
procs_with() {
  local comm=${1:0:15} pat=$2 d
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = "$comm" ] || continue
    tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$pat" && echo "${d#/proc/}"
  done
  return 0
}

# mem PID: "VmRSS PSS" in KiB.
mem() {
  local rss pss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
  echo "$rss $pss"
}

B() { "$bin/berth" -H "unix://$work/berth/b.sock" "$@"; }
D() { DOCKER_HOST="unix://$work/docker/d.sock" DOCKER_CONTEXT= DOCKER_CONFIG="$work/docker/client" DOCKER_CLI_HINTS=false "$docker_cli" "$@"; }
podman_flags=()
P() { CONTAINERS_CONF="$work/podman/containers.conf" podman "${podman_flags[@]}" "$@"; }

cleanup() {
  set +e
  log "cleaning up $work"
  [ -S "$work/berth/b.sock" ] && B rm -f bench-mem >/dev/null 2>&1
  [ -S "$work/docker/d.sock" ] && D rm -f bench-mem >/dev/null 2>&1
  [ ${#podman_flags[@]} -gt 0 ] && P rm --all --force --time 0 >/dev/null 2>&1
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
  # Per-container processes that outlived their daemon: only those naming
  # this run's directory.
  for p in $(procs_with berth-shim "$work") $(procs_with containerd-shim-runc-v2 "$work") $(procs_with conmon "$work"); do
    stop_pid "$p"
  done
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount -l "$m"; done
  # Cgroups: docker's private parent, and the directories created during
  # this run under berth's and podman's parents that hold no process.
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c$cg_docker" ] && find "$c$cg_docker" -depth -type d -exec rmdir {} \; 2>/dev/null
    for parent in berth libpod_parent; do
      [ -d "$c$parent" ] || continue
      find "$c$parent" -mindepth 1 -depth -type d -newer "$start_mark" 2>/dev/null | while read -r d; do
        [ -s "$d/cgroup.procs" ] || { rmdir "$d" 2>/dev/null && echo "removed leftover cgroup $d" >&2; }
      done
      [ "$parent" = libpod_parent ] && [ "$c$parent" -nt "$start_mark" ] && rmdir "$c$parent" 2>/dev/null
    done
  done
  for p in "${created_host[@]}"; do
    [ -d "$p" ] && find "$p" -depth -type d -empty -delete 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

log "building the busybox image archive"
mkdir -p "$work/berth" "$work/docker/client" "$work/podman" "$work/results"
(cd "$repo" && go run ./bench/run image -o "$work/busybox.tar" -tag "$image")

log "starting berthd"
echo '{}' >"$work/berth/daemon.json"
"$bin/berthd" --data-root "$work/berth/data" --exec-root "$work/berth/x" -H "unix://$work/berth/b.sock" \
  --pidfile "$work/berth/berthd.pid" --config-file "$work/berth/daemon.json" --log-level warn \
  >"$work/berth/berthd.log" 2>&1 &
berthd_pid=$!
pids+=("$berthd_pid")

log "starting dockerd"
printf '{"deprecated-key-path": "%s"}\n' "$work/docker/key.json" >"$work/docker/daemon.json"
dockerd --data-root "$work/docker/data" --exec-root "$work/docker/x" --pidfile "$work/docker/dockerd.pid" \
  --config-file "$work/docker/daemon.json" -H "unix://$work/docker/d.sock" \
  --bridge none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false \
  --storage-driver vfs --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$cg_docker" \
  --log-level warn >"$work/docker/dockerd.log" 2>&1 &
dockerd_pid=$!
pids+=("$dockerd_pid")

wait_for() {
  local what=$1 logf=$2; shift 2
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not answer; log:" >&2; tail -n 30 "$logf" >&2; exit 1
}
wait_for berthd "$work/berth/berthd.log" curl -sf --unix-socket "$work/berth/b.sock" http://berthd/_ping
wait_for dockerd "$work/docker/dockerd.log" D version

log "setting up podman"
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
[ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ] && nproc=16384
# This host's root has no CAP_SYS_RESOURCE, so podman's default rlimits
# (1048576) cannot be set: ask for at most the ones the script runs with.
cat >"$work/podman/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/podman/events.log"
tmp_dir = "$work/podman/tmp"
volume_path = "$work/podman/volumes"
static_dir = "$work/podman/root/libpod"
[network]
network_config_dir = "$work/podman/networks"
EOF
podman_flags=(--root "$work/podman/root" --runroot "$work/podman/runroot" --tmpdir "$work/podman/tmp"
  --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --network-config-dir "$work/podman/networks"
  --runtime "$(command -v runc)")

log "loading $image into each engine"
B load -i "$work/busybox.tar" >&2
D load -i "$work/busybox.tar" >&2
# podman load writes a blob-info cache under /var/lib/containers whatever
# --root says: load in a private mount namespace with a tmpfs over it.
CONTAINERS_CONF="$work/podman/containers.conf" unshare --mount --propagation private sh -c '
for d in /var/lib/containers/cache /var/lib/containers /var/lib; do
  if [ -d "$d" ]; then mount -t tmpfs -o size=64m,mode=0700 berth-bench "$d" || exit 1; break; fi
done
exec "$@"' sh podman "${podman_flags[@]}" load -i "$work/busybox.tar" >&2

# Each command once, so a failure shows its message before hyperfine runs.
B run --rm "$image" true
P run --rm --network none "$image" true
D run --rm --network none "$image" true

q() { printf '%q ' "$@"; }
berth_cmd="$(q "$bin/berth" -H "unix://$work/berth/b.sock") run --rm $image true"
podman_cmd="CONTAINERS_CONF=$(q "$work/podman/containers.conf")$(q podman "${podman_flags[@]}") run --rm --network none $image true"
docker_cmd="DOCKER_HOST=unix://$work/docker/d.sock DOCKER_CONTEXT= DOCKER_CONFIG=$work/docker/client $docker_cli run --rm --network none $image true"

# The load of a shared machine drifts; hyperfine times one command after
# the other, so the runs are split into rounds, each timing all three
# commands, and the report merges them and shows the ratio's spread.
per_round=$(( (runs + rounds - 1) / rounds ))
log "hyperfine: $rounds rounds of $per_round runs, $warmup warm-ups each per round"
for r in $(seq "$rounds"); do
  hyperfine --style basic --warmup "$warmup" --runs "$per_round" --export-json "$work/results/round-$r.json" \
    -n "berth run --rm $image true" "$berth_cmd" \
    -n "podman run --rm --network none $image true" "$podman_cmd" \
    -n "docker run --rm --network none $image true" "$docker_cmd" >&2
done
rounds_files=()
for r in $(seq "$rounds"); do rounds_files+=("$work/results/round-$r.json"); done
table=$(cd "$repo" && go run ./bench/run report -summary "$work/results/ratios" "${rounds_files[@]}")
{ read -r _; read -r ratio_podman podman_lo podman_hi; read -r ratio_docker _; } <"$work/results/ratios"

log "memory"
sleep 5 # let berthd settle after the runs
read -r berthd_rss berthd_pss < <(mem "$berthd_pid")
containerd_pid=$(procs_with containerd "$work/docker/x" | head -n1)
read -r dockerd_rss dockerd_pss < <(mem "$dockerd_pid")
read -r containerd_rss containerd_pss < <(mem "$containerd_pid")

B run -d --name bench-mem "$image" sleep 100 >/dev/null
D run -d --name bench-mem --network none "$image" sleep 100 >/dev/null
P run -d --name bench-mem --network none "$image" sleep 100 >/dev/null
sleep 3
berth_shim=$(procs_with berth-shim "$work/berth/x" | head -n1)
docker_shim=$(procs_with containerd-shim-runc-v2 "$work/docker/x" | head -n1)
conmon_pid=$(procs_with conmon "$work/podman" | head -n1)
for v in berth_shim docker_shim conmon_pid containerd_pid; do
  [ -n "${!v}" ] || { echo "no process found for $v" >&2; exit 1; }
done
read -r bshim_rss bshim_pss < <(mem "$berth_shim")
read -r dshim_rss dshim_pss < <(mem "$docker_shim")
read -r conmon_rss conmon_pss < <(mem "$conmon_pid")
read -r berthd_busy_rss berthd_busy_pss < <(mem "$berthd_pid")

mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
memtable=$(cat <<EOF
| process | VmRSS | PSS |
|---|---|---|
| berthd, idle after the runs | $(mib "$berthd_rss") | $(mib "$berthd_pss") |
| berthd, with the one sleeping container | $(mib "$berthd_busy_rss") | $(mib "$berthd_busy_pss") |
| dockerd, idle after the runs | $(mib "$dockerd_rss") | $(mib "$dockerd_pss") |
| its containerd | $(mib "$containerd_rss") | $(mib "$containerd_pss") |
| dockerd + containerd | $(mib $((dockerd_rss + containerd_rss))) | $(mib $((dockerd_pss + containerd_pss))) |
| berth-shim of a \`sleep 100\` container | $(mib "$bshim_rss") | $(mib "$bshim_pss") |
| containerd-shim-runc-v2 of a \`sleep 100\` container | $(mib "$dshim_rss") | $(mib "$dshim_pss") |
| podman's conmon of a \`sleep 100\` container | $(mib "$conmon_rss") | $(mib "$conmon_pss") |
EOF
)
load_end=$(uptime)

# The goals: berth at least 3x faster than podman; berthd idle under 40 MiB;
# a berth-shim under 4 MiB.
verdict() { if [ "$1" = 1 ]; then echo met; else echo "not met"; fi; }
goals=$(cat <<EOF
| goal | measured | |
|---|---|---|
| berth run at least 3x faster than podman run | ${ratio_podman}x over all rounds, ${podman_lo}x - ${podman_hi}x among the rounds (docker: ${ratio_docker}x) | $(verdict "$(awk -v r="$ratio_podman" 'BEGIN {print (r >= 3)}')") on the mean over all rounds$(awk -v r="$podman_lo" 'BEGIN {if (r < 3) print "; not in every round"}') |
| berthd idle under 40 MiB | $(mib "$berthd_rss") VmRSS (dockerd + containerd: $(mib $((dockerd_rss + containerd_rss)))) | $(verdict $((berthd_rss < 40 * 1024))) |
| a berth-shim under 4 MiB | $(mib "$bshim_rss") VmRSS (containerd-shim-runc-v2: $(mib "$dshim_rss")) | $(verdict $((bshim_rss < 4 * 1024))) |
EOF
)

echo
echo "$table"
echo
echo "$memtable"
echo
echo "$goals"
echo
echo "load before: $load_start"
echo "load after:  $load_end"

if [ "$write_docs" = 1 ]; then
  # The analysis from "## Where the time goes" on is written by hand: kept.
  analysis=""
  [ -f "$repo/docs/benchmarks-run.md" ] && analysis=$(sed -n '/^## Where the time goes/,$p' "$repo/docs/benchmarks-run.md")
  podman_runtime=$(P info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}' 2>/dev/null | head -n1)
  {
    cat <<EOF
# Run benchmark

The time of \`run --rm IMAGE true\` (create, start, wait, remove a container
that runs \`true\`) with berth, podman and docker, and the memory of each
engine's daemon and per-container process, measured by
[\`bench/run.sh\`](../bench/run.sh):

    $cmdline --write-docs

The image is the busybox of the test fixtures (one layer, a static busybox),
written as a docker-archive tarball by \`bench/run\` and loaded into every
engine. Each engine runs with private roots under one temporary directory:

- berth: \`berthd\` with its own data root, exec root and socket; containers
  run by \`berth-shim\` and \`berth-runtime\`.
- podman $(podman --version | awk '{print $3}'): vfs storage, cgroupfs, the file events backend,
  runtime \`$podman_runtime\`, conmon $(conmon --version | awk 'NR==1 {print $3}').
- docker: Debian's dockerd $(dockerd --version | awk '{print $3}' | tr -d ,) with its own containerd
  $(containerd --version | awk '{print $3}'), runc, vfs storage, cgroupfs under a private cgroup parent,
  no bridge, no iptables; the docker CLI $("$docker_cli" --version | awk '{print $3}' | tr -d ,).

hyperfine $(hyperfine --version | awk '{print $2}'): $rounds rounds, each timing all three commands
with $warmup warm-up runs and $per_round timed runs per command; the table merges the
rounds and shows the lowest and highest ratio among them. Machine: $(nproc) cores,
$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr).

Load before: \`$load_start\`

Load after: \`$load_end\`

## Time

$table

## Memory

VmRSS from /proc/PID/status, PSS from /proc/PID/smaps_rollup. The daemons
are measured idle, 5 s after the timed runs; the per-container processes
with one detached \`sleep 100\` container per engine.

$memtable

## Goals

$goals

## Notes

- podman runs with runc: its default runtime, crun, refuses this host's
  hybrid cgroup layout ("crun: cgroups in hybrid mode not supported, drop
  all controllers from cgroupv2"; the v2 mount here holds hugetlb).
- podman has no daemon; its per-container process is conmon, shown for
  comparison. Its \`run --rm\` time includes starting podman itself, which
  opens its storage and database on every command.
- The machine is shared with other work, and its load moves during a run
  (see the load averages above): the last column shows how far the ratio to
  berth moved between rounds.
- The timed runs of all three engines share the same two cores and the same
  file system (the directory under /run is on the root disk, not a tmpfs).
EOF
    if [ -n "$analysis" ]; then
      echo
      echo "$analysis"
    fi
  } >"$repo/docs/benchmarks-run.md"
  log "wrote docs/benchmarks-run.md"
fi
