#!/bin/bash
# The fresh-machine demo: Berth's main job, a container from an image pulled
# from a registry, end to end on this machine alone.
#
#  1. a local registry (Debian's docker-registry on a free loopback port);
#  2. a busybox image made from Debian's busybox-static (`berth import`) and
#     pushed to it (`berth push`), then removed from berthd;
#  3. `berth pull` and `berth run --rm` of that image through berthd,
#     berth-shim and berth-runtime;
#  4. the same image run by the OCI runtime alone, from a bundle.
#
# berthd runs with private roots under a temporary directory and is stopped
# by PID at the end, with the registry; nothing is left behind. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH_BIN:-$PWD/bin}
for b in berthd berth berth-shim berth-runtime; do
  [ -x "$bin/$b" ] || { echo "demo: $bin/$b missing: run make build" >&2; exit 1; }
done
[ -x /usr/bin/docker-registry ] || { echo "demo: docker-registry missing: run make deps" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "demo: /bin/busybox missing: run make deps" >&2; exit 1; }

dir=$(mktemp -d /tmp/berth-demo.XXXXXX)
berthd_pid=
registry_pid=
cleanup() {
  set +e
  [ -n "$berthd_pid" ] && kill -TERM "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill -TERM "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  # berthd unmounts what it mounted; anything a crash left is removed here.
  grep -o " $dir[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$dir"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# A free loopback port for the registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((20000 + RANDOM % 20000)))
registry=127.0.0.1:$port
mkdir -p "$dir/registry"
cat >"$dir/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/registry
http:
  addr: $registry
log:
  level: error
EOF
step "starting a local registry on $registry"
/usr/bin/docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
registry_pid=$!

sock=$dir/berth.sock
step "starting berthd (data root $dir/data)"
"$bin/berthd" --data-root "$dir/data" --exec-root "$dir/run" -H "unix://$sock" \
  --pidfile "$dir/berthd.pid" >"$dir/berthd.log" 2>&1 &
berthd_pid=$!
berth() { "$bin/berth" -H "unix://$sock" "$@"; }
for _ in $(seq 100); do
  berth version >/dev/null 2>&1 && (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
berth version >/dev/null || { cat "$dir/berthd.log" >&2; exit 1; }

step "making a busybox image from Debian's busybox-static and pushing it"
mkdir -p "$dir/rootfs/bin"
cp /bin/busybox "$dir/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"
done
tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
image=$registry/busybox:demo
berth import --change 'CMD ["sh"]' "$dir/rootfs.tar" "$image"
berth push "$image"
berth rmi "$image" >/dev/null

step "berth pull $image"
berth pull "$image"
berth images

step "berth run --rm $image"
berth run --rm --name berth-demo "$image" \
  sh -c 'echo hello from a berth container; echo hostname: $(hostname); echo pid: $$; ls /'

step "berth-runtime run: the same root filesystem as an OCI bundle"
mkdir -p "$dir/bundle"
ln -s ../rootfs "$dir/bundle/rootfs"
"$bin/berth-runtime" spec --bundle "$dir/bundle"
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo hello from berth-runtime; echo pid: $$"/' "$dir/bundle/config.json"
"$bin/berth-runtime" --root "$dir/runtime" run --bundle "$dir/bundle" "berth-demo-$$"
