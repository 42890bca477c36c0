#!/usr/bin/env python3
"""A kube-proxy-shaped nftables ruleset (its nftables mode's layout): a service-ips verdict map
jumping to a chain per service, which picks an endpoint chain with `numgen random mod N vmap`,
which DNATs. Three chains per service with two endpoints. For bench/proxy.sh only.

  kube_proxy_shape.py full N E     the whole ruleset for N services of E endpoints
  kube_proxy_shape.py add-one N E  adding service N (one more) to that ruleset
"""
import sys

T = "kube-proxy-shape"


def vip(i):
    return f"10.96.{i // 250}.{i % 250 + 1}"


def ep(i, j, e):
    k = i * e + j
    return f"10.244.{k // 250 % 250}.{k % 250 + 2}"


def service(i, e):
    out = []
    for j in range(e):
        out.append(f"add chain ip {T} endpoint-{i}-{j}")
        out.append(f"add rule ip {T} endpoint-{i}-{j} ip saddr {ep(i, j, e)} jump mark-for-masquerade")
        out.append(f"add rule ip {T} endpoint-{i}-{j} meta l4proto tcp dnat to {ep(i, j, e)}:8080")
    out.append(f"add chain ip {T} service-{i}")
    out.append(f"add rule ip {T} service-{i} ip daddr {vip(i)} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade")
    vm = ", ".join(f"{j} : goto endpoint-{i}-{j}" for j in range(e))
    out.append(f"add rule ip {T} service-{i} numgen random mod {e} vmap {{ {vm} }}")
    out.append(f"add element ip {T} service-ips {{ {vip(i)} . tcp . 80 : goto service-{i} }}")
    return out


def head():
    return [
        f"add table ip {T}",
        f"add chain ip {T} mark-for-masquerade",
        f"add rule ip {T} mark-for-masquerade meta mark set meta mark | 0x4000",
        f"add map ip {T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}",
        f"add chain ip {T} services",
        f"add rule ip {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add chain ip {T} nat-output {{ type nat hook output priority -100; policy accept; }}",
        f"add rule ip {T} nat-output jump services",
    ]


def main():
    mode, n, e = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    lines = head() + [l for i in range(n) for l in service(i, e)] if mode == "full" else service(n, e)
    print("\n".join(lines))


main()
