#!/bin/bash
# Makes a minimal Debian root filesystem with debootstrap for Berth's pull
# benchmark, once: later runs find it in the cache and do nothing.
#   scripts/make-debian-rootfs.sh [DIR]   (default: $BERTH_CACHE/debian-rootfs,
#                                          BERTH_CACHE defaults to /var/cache/berth-test)
# The mirror is the first Debian archive this machine's apt sources use, so it
# works wherever apt does. Needs root and the debootstrap package.
set -euo pipefail
cache=${BERTH_CACHE:-/var/cache/berth-test}
dir=${1:-$cache/debian-rootfs}
suite=${DEBIAN_SUITE:-bookworm}

if [ -f "$dir.complete" ]; then
  echo "$dir" ; exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# First "deb" URI for the main Debian archive, from one-line or deb822 sources.
mirror=$(
  { cat /etc/apt/sources.list 2>/dev/null; cat /etc/apt/sources.list.d/*.list 2>/dev/null; } |
    awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^https?:\/\//) { print $i; exit } }' |
    grep -v -- '-security' | head -n1 || true
)
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }' |
    grep -E '/debian/?$' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "debootstrap --variant=minbase $suite from $mirror into $dir" >&2
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# Drop the apt lists and caches debootstrap leaves behind; an image does not need them.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
rm -rf "$dir" "$dir.complete"
mv "$tmp" "$dir"
touch "$dir.complete"   # beside the tree, so it is not part of the image
trap - EXIT
echo "$dir"
