#!/usr/bin/env python3
"""Data for bench/dns.sh.

manifests N OUT   N Services in 10 namespaces: 9 in 10 ClusterIP with a named port, 1 in 10
                  headless with 3 ready endpoints (user EndpointSlices, so no pods are needed).
queries ZONE OUT  a dnsperf query file from `podnet check --dns` output: every A, SRV and PTR
                  name of the zone, and as many names that do not exist (the search-path
                  expansions a pod with ndots:5 asks first), shuffled with a fixed seed.
unbound ZONE OUT  Unbound local-data with the same records (static zones: the same NXDOMAIN and
                  NODATA answers).
"""
import random
import sys


def manifests(n, out):
    with open(out, "w") as f:
        for ns in range(10):
            f.write(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{ns}}}\n---\n")
        for i in range(n):
            ns = f"ns{i % 10}"
            if i % 10 == 9:
                f.write(f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: {ns}}}\n"
                        f"spec: {{clusterIP: None, ports: [{{name: http, port: 80}}]}}\n---\n")
                addrs = [f"10.{100 + k}.{(i // 256) % 256}.{i % 256}" for k in range(3)]
                eps = ", ".join(f"{{addresses: [{a}], conditions: {{ready: true}}}}" for a in addrs)
                f.write(f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                        f"metadata: {{name: svc{i}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: svc{i}}}}}\n"
                        f"addressType: IPv4\nports: [{{name: http, port: 80, protocol: TCP}}]\nendpoints: [{eps}]\n---\n")
            else:
                f.write(f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: {ns}}}\n"
                        f"spec: {{ports: [{{name: http, port: 80}}]}}\n---\n")


def records(zone):
    for line in open(zone):
        if line.startswith(";") or not line.strip():
            continue
        yield line.split()


def queries(zone, out):
    qs = []
    for name, _ttl, _in, typ, *_ in records(zone):
        if typ in ("A", "AAAA", "SRV", "PTR"):
            qs.append(f"{name} {typ}")
        if typ in ("A", "AAAA") and ".svc." in name:
            # What glibc asks first for `<svc>.<ns>` from a pod in namespace ns0.
            qs.append(f"{name}ns0.svc.cluster.local. {typ}")
    qs = sorted(set(qs))
    random.Random(42).shuffle(qs)
    with open(out, "w") as f:
        f.write("\n".join(qs) + "\n")


def unbound(zone, out):
    with open(out, "w") as f:
        f.write('local-zone: "cluster.local." static\nlocal-zone: "in-addr.arpa." static\n')
        for r in records(zone):
            f.write('local-data: "' + " ".join(r).replace('"', '\\"') + '"\n')


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "manifests":
        manifests(int(sys.argv[2]), sys.argv[3])
    elif cmd == "queries":
        queries(sys.argv[2], sys.argv[3])
    elif cmd == "unbound":
        unbound(sys.argv[2], sys.argv[3])
