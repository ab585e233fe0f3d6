#!/bin/bash
# Berth's pull benchmark: pull the same images from one local registry with
#   berth pull            (berthd with a fresh data root for every run)
#   skopeo copy + umoci unpack   (download to an OCI layout, unpack a bundle)
#   podman pull           (private --root/--runroot, emptied for every run)
#   floor                 (for each layer in order: curl GET of the blob from
#                          the registry | gzip -dc or zstd -dc | tar -x into
#                          one fresh directory; no verification, no whiteout
#                          handling, no fsync: the raw download plus
#                          decompress-and-untar of the same blobs)
# timed by hyperfine in one run, and print each tool's time relative to berth
# and berth's time relative to the floor.
#
#   bench/pull.sh [--runs N] [--images busybox,multi-layer,debian] [--scratch-fs SIZE] [--write-docs]
#
# The images are built by bench/pull (busybox from busybox-static, the
# multi-layer test fixture, and Debian bookworm from
# scripts/make-debian-rootfs.sh) and pushed to Debian's docker-registry on a
# free loopback port. With --write-docs the results and this exact command go
# to docs/benchmarks-pull.md. Needs root; installs podman with apt if missing.
#
# --scratch-fs SIZE (e.g. 8G) puts every store on a new ext4 file system with
# a journal, loop-mounted in a private mount namespace and removed at the end.
# Use it where /tmp is ext4 without a journal: there the inode allocator skips
# every inode freed in the last 60-360 s, and since each run deletes the
# previous run's tree, inode creation dominates every contender's time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
bin=${BERTH_BIN:-$repo/bin}
export PATH=/usr/local/go/bin:$PATH

# Internal: restart berthd on an empty data root (hyperfine --prepare).
if [ "${1:-}" = "__berthd-reset" ]; then
  w=$2
  if [ -f "$w/berth/pid" ]; then
    pid=$(cat "$w/berth/pid")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$w/berth/pid"
  fi
  rm -rf "$w/berth/data" "$w/berth/exec" "$w/berth/berth.sock"
  mkdir -p "$w/berth"
  setsid "$bin/berthd" --data-root "$w/berth/data" --exec-root "$w/berth/exec" \
    -H "unix://$w/berth/berth.sock" --log-level warn >>"$w/berth/berthd.log" 2>&1 &
  echo $! >"$w/berth/pid"
  for _ in $(seq 400); do
    curl -sf --unix-socket "$w/berth/berth.sock" http://berthd/_ping >/dev/null 2>&1 && exit 0
    sleep 0.05
  done
  echo "berthd did not start; log:" >&2; tail -n 20 "$w/berth/berthd.log" >&2; exit 1
fi

# Internal: the floor contender. Fetch every layer listed in LIST ("gzip|zstd|tar
# DIGEST" lines, in order, from "pull-driver layers") from the registry and
# untar it into DEST, which must not exist yet.
if [ "${1:-}" = "__floor" ]; then
  dest=$2 reg=$3 name=$4 list=$5
  mkdir "$dest"
  while read -r kind digest; do
    case $kind in
      gzip) dec=(gzip -dc) ;;
      zstd) dec=(zstd -dcq) ;;
      tar) dec=(cat) ;;
      *) echo "floor: unknown layer kind $kind" >&2; exit 1 ;;
    esac
    curl -sfL "http://$reg/v2/$name/blobs/$digest" | "${dec[@]}" | tar -x --numeric-owner -C "$dest"
  done <"$list"
  exit 0
fi

orig_args=("$@")
runs=5
images=busybox,multi-layer,debian
write_docs=0
scratch=
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    --scratch-fs) scratch=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cmdline="bench/pull.sh --runs $runs --images $images${scratch:+ --scratch-fs $scratch}"

[ "$(id -u)" = 0 ] || { echo "bench/pull.sh needs root" >&2; exit 1; }
for b in berthd berth; do
  [ -x "$bin/$b" ] || { echo "$bin/$b missing: run make build (or set BERTH_BIN)" >&2; exit 1; }
done
missing=()
for t in docker-registry:docker-registry skopeo:skopeo umoci:umoci hyperfine:hyperfine podman:podman curl:curl zstd:zstd; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# With --scratch-fs, run the rest in a private mount namespace so the scratch
# file system is never visible on the host and goes away with the script.
if [ -n "$scratch" ] && [ -z "${BERTH_BENCH_PULL_NS:-}" ]; then
  exec unshare -m --propagation private env BERTH_BENCH_PULL_NS=1 bash "$here/pull.sh" "${orig_args[@]}"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
img=
if [ -n "$scratch" ]; then
  img=$(mktemp /var/tmp/berth-bench-pull.XXXXXX.img)
  truncate -s "$scratch" "$img"
  mkfs.ext4 -q -F "$img"
  mount -o loop "$img" "$work"
fi
stores="$(findmnt -no SOURCE,FSTYPE -T "$work" | tr -s ' ' | sed 's/ / (/; s/$/)/')"
if [ -n "$scratch" ]; then
  stores="a fresh $scratch ext4 file system with a journal (loop device in a private mount namespace)"
elif [ "$(findmnt -no FSTYPE -T "$work")" = ext4 ] && grep -qx '<none>' "/sys/fs/ext4/$(basename "$(findmnt -no SOURCE -T "$work")")/journal_task" 2>/dev/null; then
  stores="$stores, which has no journal"
fi
reg_pid=
cleanup() {
  if [ -f "$work/berth/pid" ]; then kill "$(cat "$work/berth/pid")" 2>/dev/null || true; fi
  if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; fi
  sleep 0.2
  if [ -n "$img" ]; then
    umount "$work" 2>/dev/null || umount -l "$work" || true
    rm -f "$img"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The registry: Debian's docker-registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: $reg
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
reg_pid=$!
for _ in $(seq 200); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.05; done
curl -sf "http://$reg/v2/" >/dev/null || { cat "$work/registry/log" >&2; exit 1; }

debian_dir=
if [[ ,$images, == *,debian,* ]]; then
  debian_dir=$(bash "$repo/scripts/make-debian-rootfs.sh" | tail -n1)
fi
(cd "$repo" && go build -o "$work/pull-driver" ./bench/pull)
"$work/pull-driver" push -registry "$reg" ${debian_dir:+-debian "$debian_dir"} | tee "$work/pushed.txt"

mkdir -p "$work/results"
podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend file"
while read -r name ref digest nlayers size; do
  [[ ,$images, == *,$name,* ]] || continue
  echo "== $name: $ref ($nlayers layers, $size bytes compressed)" >&2
  "$work/pull-driver" layers "$ref" "$digest" >"$work/results/$name.layers"
  repo_name=${ref#*/}; repo_name=${repo_name%:*}
  floor_cmd="bash $here/pull.sh __floor $work/floor $reg $repo_name $work/results/$name.layers"
  # The floor must unpack what the others unpack: check one untimed run.
  rm -rf "$work/floor"; $floor_cmd
  echo "floor check: $(find "$work/floor" | wc -l) paths, $(du -sb "$work/floor" | cut -f1) bytes" >&2
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  hyperfine --warmup 1 --runs "$runs" --export-json "$work/results/$name.json" --style basic \
    -n berth --prepare "bash $here/pull.sh __berthd-reset $work" \
    "$bin/berth -H unix://$work/berth/berth.sock pull -q $ref" \
    -n skopeo+umoci --prepare "rm -rf $work/oci $work/bundle" \
    "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:img && umoci unpack --image $work/oci:img $work/bundle" \
    -n podman --prepare "rm -rf $work/podman" \
    "podman $podman_flags pull -q --tls-verify=false $ref" \
    -n floor --prepare "rm -rf $work/floor" \
    "$floor_cmd"
  echo "$name $ref $nlayers $size $load_before $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/results/images.txt"
done <"$work/pushed.txt"

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
report=$("$work/pull-driver" report "$work"/results/*.json)
echo "$report"

if [ "$write_docs" = 1 ]; then
  {
    echo "## Pull: berth vs skopeo + umoci vs podman vs the floor"
    echo
    echo "Command: \`sudo $cmdline\` (commit $(cd "$repo" && git rev-parse --short HEAD), $(date -u +%Y-%m-%d))."
    echo
    echo "Each run (after one untimed warm-up run per tool) pulls one image from Debian's docker-registry on 127.0.0.1 into an empty store:"
    echo "berthd restarted on a fresh data root before every run (start-up not timed), \`skopeo copy\`"
    echo "to a fresh OCI layout followed by \`umoci unpack\` into a bundle, and \`podman pull\` with an"
    echo "emptied private --root (overlay driver). All three download, verify and unpack every layer."
    echo
    echo "The floor is the raw download plus decompress-and-untar of the same blobs: for each layer, in"
    echo "manifest order, \`curl\` GETs /v2/<repo>/blobs/<digest> from the same registry and pipes it through"
    echo "\`gzip -dc\` or \`zstd -dc\` (by the layer's media type) into \`tar -x --numeric-owner\` into one fresh"
    echo "directory (removed in --prepare). It is a minimal unpack: no digest verification, no whiteout"
    echo "handling, no per-layer snapshots, no fsync or syncfs, and the manifest is resolved before timing."
    echo
    echo "Images (load average 1/5/15 min before and after each image's hyperfine run):"
    echo
    while read -r name ref nlayers size l1 l5 l15 e1 e5 e15; do
      echo "- $name: $nlayers layer(s), $size bytes compressed; load $l1 $l5 $l15 before, $e1 $e5 $e15 after"
    done <"$work/results/images.txt"
    echo
    echo "Load average at the start of the script: $load_start; at the end: $load_end."
    echo "All stores (and the registry's storage) were on $stores."
    echo
    echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r);"
    echo "$(skopeo --version), $(umoci --version), $(podman --version), $(hyperfine --version);"
    echo "floor: $(curl --version | head -n1 | cut -d' ' -f1-2), $(gzip --version | head -n1), zstd $(zstd --version | grep -o 'v[0-9.]*' | head -n1), $(tar --version | head -n1)."
    echo "$report"
  } >"$repo/docs/benchmarks-pull.md"
  echo "wrote docs/benchmarks-pull.md" >&2
fi
