#!/bin/bash
# Installs the Debian packages Berth builds with and its tests use. Idempotent:
# packages already present are not fetched again. Needs root and Debian 12.
set -euo pipefail
pkgs=(
  gcc make pkg-config libseccomp-dev   # cgo: the runtime's namespace entry and seccomp
  busybox-static                       # test fixtures: busybox root filesystems
  iproute2 nftables                    # namespaces and network tests
  runc crun                            # peers: conformance and benchmarks, --runtime tests
  docker-registry skopeo umoci         # local registries and image tool peers
  hyperfine time                       # benchmarks
  uidmap                               # rootless: newuidmap/newgidmap for /etc/subuid ranges
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian registry package starts a system service; Berth's tests start
# their own registries on private ports, so the packaged one is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# The engines the drop-in tests run berth-runtime under (containerd, podman,
# dockerd), installed without leaving their daemons running.
bash "$(dirname "$0")/install-dropin-deps.sh"
