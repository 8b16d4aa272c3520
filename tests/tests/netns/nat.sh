#!/usr/bin/env bash
# Two private networks, each behind its own NAT (nftables masquerade), and a public
# network between the NATs where a relay runs. Every namespace is created and removed by
# this script; nothing leaves the machine (documentation address ranges, no default route
# out of the namespaces).
#
#   P-pub   203.0.113.1  relay (a bridge joining the NATs' public sides)
#   P-nata  203.0.113.2 | 198.51.100.1   masquerade out of its public side
#   P-a     198.51.100.2, default via P-nata
#   P-natb  203.0.113.3 | 192.0.2.1      masquerade out of its public side
#   P-b     192.0.2.2, default via P-natb
#
# Usage: nat.sh up PREFIX | nat.sh down PREFIX. Needs root, iproute2 and nftables.
set -euo pipefail
cmd=${1:?up or down}
p=${2:?prefix}

down() {
  for ns in pub nata a natb b; do
    ip netns del "$p-$ns" 2>/dev/null || true
  done
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi

down
for ns in pub nata a natb b; do
  ip netns add "$p-$ns"
  ip -n "$p-$ns" link set lo up
done

# The public side: a bridge in P-pub, one port per NAT.
ip -n "$p-pub" link add br0 type bridge
ip -n "$p-pub" addr add 203.0.113.1/24 dev br0
ip -n "$p-pub" link set br0 up

side() { # nat-name public-ip lan-net-prefix host-name
  local nat=$1 pubip=$2 lan=$3 host=$4
  ip link add "$p-$nat-w" type veth peer name "$p-$nat-x"
  ip link set "$p-$nat-w" netns "$p-$nat"
  ip link set "$p-$nat-x" netns "$p-pub"
  ip -n "$p-pub" link set "$p-$nat-x" master br0 up
  ip -n "$p-$nat" link set "$p-$nat-w" name wan
  ip -n "$p-$nat" addr add "$pubip/24" dev wan
  ip -n "$p-$nat" link set wan up
  ip link add "$p-$host-l" type veth peer name "$p-$host-e"
  ip link set "$p-$host-l" netns "$p-$nat"
  ip link set "$p-$host-e" netns "$p-$host"
  ip -n "$p-$nat" link set "$p-$host-l" name lan
  ip -n "$p-$nat" addr add "$lan.1/24" dev lan
  ip -n "$p-$nat" link set lan up
  ip -n "$p-$host" link set "$p-$host-e" name eth0
  ip -n "$p-$host" addr add "$lan.2/24" dev eth0
  ip -n "$p-$host" link set eth0 up
  ip -n "$p-$host" route add default via "$lan.1"
  ip netns exec "$p-$nat" sysctl -qw net.ipv4.ip_forward=1
  # Masquerade what leaves the public side; let in only replies to what went out. New
  # connections arriving on the public side are dropped, as a home router does, before
  # conntrack confirms them: otherwise a hole-punching packet that arrives before this
  # side's own first packet leaves an entry that makes masquerade pick another port.
  ip netns exec "$p-$nat" nft -f - <<NFT
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}
table ip filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan" accept
    ct state established,related accept
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
}
NFT
}
side nata 203.0.113.2 198.51.100 a
side natb 203.0.113.3 192.0.2 b
