#!/bin/bash
# The fresh-machine demo: make a busybox bundle from Debian's busybox-static
# and run a container from it with berth-runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH_BIN:-$PWD/bin}
dir=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/rootfs/bin"
cp /bin/busybox "$dir/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"
done
"$bin/berth-runtime" spec --bundle "$dir"
# No terminal, and a command that shows it is inside its own namespaces.
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo hello from a berth container; echo hostname: $(hostname); echo pid: $$; ls \/"/' "$dir/config.json"
"$bin/berth-runtime" run --bundle "$dir" "berth-demo-$$"
