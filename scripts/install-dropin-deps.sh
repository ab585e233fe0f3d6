#!/bin/bash
# Installs the container engines Berth's drop-in tests run with berth-runtime
# as their runc: Debian's containerd (ctr), podman and docker.io (dockerd),
# with what they need to run as root on this host. Idempotent: packages
# already present are not fetched again. Needs root and Debian 12.
#
# The tests start every engine themselves with private state directories and
# sockets, so no packaged daemon may be left running: service starts are
# refused during the install (policy-rc.d), and any containerd or dockerd
# that appeared during the install is stopped by PID. Daemons that were
# already running before are left alone.
set -euo pipefail
pkgs=(
  containerd                           # containerd 1.6 and ctr
  docker.io                            # dockerd 20.10 (the tests use the docker CLI on PATH)
  podman conmon catatonit              # podman 4.3 and its monitor
  fuse-overlayfs slirp4netns uidmap    # podman's storage and network helpers
  runc                                 # the reference runtime the engines default to
  tini                                 # docker.io's init
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

daemons='containerd|dockerd|docker-proxy'
before=$(pgrep -x -d' ' "$daemons" 2>/dev/null || true)
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Refuse service starts while Berth installs its test engines.\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { [ -n "$own_policy" ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Stop whatever engine daemon the packages started anyway (a systemd host
# ignores policy-rc.d): by service where systemd runs, else by PID.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for s in docker.socket docker containerd podman.socket; do
    if systemctl is-active --quiet "$s" 2>/dev/null; then
      systemctl stop "$s" || true
      systemctl disable "$s" 2>/dev/null || true
    fi
  done
fi
for pid in $(pgrep -x "$daemons" 2>/dev/null || true); do
  case " $before " in *" $pid "*) continue ;; esac
  echo "stopping $(cat /proc/"$pid"/comm 2>/dev/null) (pid $pid) started by the install" >&2
  kill -TERM "$pid" 2>/dev/null || true
done
