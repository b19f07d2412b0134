#!/usr/bin/env bash
# What the network-partition fault scenarios need (tests/faults/network.py): nft, from Debian's
# nftables package (installed with apt-get when missing), root, and a cgroup v2 hierarchy.
#
#   deploy/scripts/netfault.sh
set -euo pipefail

die() { echo "netfault: $*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "the partition scenarios cut processes off with nftables rules: run the fault scenarios as root"
grep -qw cgroup2 /proc/self/mounts || die "no cgroup v2 hierarchy is mounted (the partition scenarios match a process by its cgroup)"
command -v nft >/dev/null && exit 0
[[ -z "${REBOUND_NO_APT:-}" ]] || die "nft not found, and REBOUND_NO_APT is set: install nftables"
command -v apt-get >/dev/null || die "nft not found and no apt-get to install it: install nftables"
echo "netfault: installing Debian's nftables package (log: /tmp/rebound-nftables-apt.log)" >&2
{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables; } \
  >/tmp/rebound-nftables-apt.log 2>&1 \
  || die "apt-get install nftables failed, see /tmp/rebound-nftables-apt.log"
command -v nft >/dev/null || die "nftables was installed but nft is not on PATH"
