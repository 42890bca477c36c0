"""Runs the Ingress proxy benchmark (see bench/ingress.sh): podnet, nginx and HAProxy in turn,
behind the same backend, under wrk and h2load; prints a Markdown table of requests per second
and p50/p99 latency per point, the ratios to nginx, and the memory with idle connections."""

import shutil
import socket
import os
import sys
import tempfile
import time

from edgebench import Bench, failures, med, wait_port

BENCH, SECS, ROUNDS, IDLE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
BACKEND = 18081
PORTS = {"podnet": (18180, 18543), "nginx": (18280, 18643), "haproxy": (18380, 18743),
         "baseline": (18480, 18843)}
# BASELINE=<another build's edge_bench>: podnet against that build too, in the same rounds
# (a change's A/B: no regression, or by how much).
BASELINE = os.environ.get("BASELINE")
PROXIES = ["podnet", "nginx", "haproxy"] + (["baseline"] if BASELINE else [])
CONNS = [1, 16, 256]
tmp = tempfile.mkdtemp(prefix="podnet-ingress-bench-")
bench = Bench(tmp, SECS)
crt, key = bench.certificate()
pem = f"{tmp}/tls.pem"
with open(pem, "w") as f:
    f.write(open(crt).read() + open(key).read())

NGINX_COMMON = f"""
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/%s.pid;
error_log {tmp}/%s.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 15000; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/%s-body;
  proxy_temp_path {tmp}/%s-proxy;
  fastcgi_temp_path {tmp}/%s-fcgi;
  uwsgi_temp_path {tmp}/%s-uwsgi;
  scgi_temp_path {tmp}/%s-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
"""

backend_conf = NGINX_COMMON % (("backend",) * 7) + f"""
  server {{
    listen 127.0.0.1:{BACKEND} reuseport backlog=4096;
    location / {{ return 200 "hello\\n"; }}
  }}
}}
"""

nginx_conf = NGINX_COMMON % (("nginx",) * 7) + f"""
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx'][0]} backlog=4096;
    listen 127.0.0.1:{PORTS['nginx'][1]} ssl http2 backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    http2_max_concurrent_streams 250;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Request-ID $request_id;
      proxy_connect_timeout 5s;
      proxy_read_timeout 60s;
      proxy_buffering on;
    }}
  }}
}}
"""

haproxy_conf = f"""
global
  nbthread 1
  cpu-map auto:1/1 1
  maxconn 9500
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 75s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{PORTS['haproxy'][0]}
  bind 127.0.0.1:{PORTS['haproxy'][1]} ssl crt {pem} alpn h2,http/1.1
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Request-ID %[uuid()]
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:{BACKEND}
"""

for name, text in [("backend", backend_conf), ("nginx", nginx_conf), ("haproxy", haproxy_conf)]:
    with open(f"{tmp}/{name}.conf", "w") as f:
        f.write(text)


def start_proxy(name):
    http, https = PORTS[name]
    if name in ("podnet", "baseline"):
        exe = BENCH if name == "podnet" else BASELINE
        cmd = [exe, "ingress", f"127.0.0.1:{http}", f"127.0.0.1:{https}", f"127.0.0.1:{BACKEND}", "1", crt, key]
    elif name == "nginx":
        cmd = ["nginx", "-e", f"{tmp}/nginx.err", "-c", f"{tmp}/nginx.conf"]
    else:
        cmd = ["haproxy", "-db", "-f", f"{tmp}/haproxy.conf"]
    p = bench.start(["taskset", "-c", "1"] + cmd)
    wait_port(http, name)
    wait_port(https, name)
    return p


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_memory(name, proc):
    """RSS growth with IDLE keep-alive connections, each having served one request, once
    settled (3 s after the load before, and after the last answer: allocators that give
    memory back do it when requests stop, podnet's a second after)."""
    port = PORTS[name][0]
    time.sleep(3)
    before = rss_kb(proc.pid)
    socks = []
    req = b"GET / HTTP/1.1\r\nHost: bench.example.com\r\n\r\n"
    served = 0

    def read_answers(batch):
        nonlocal served
        for t in batch:
            got = b""
            while b"hello" not in got:
                chunk = t.recv(4096)
                if not chunk:
                    break
                got += chunk
            served += b"hello" in got

    for i in range(IDLE):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        socks.append(s)
        if len(socks) % 500 == 0:
            read_answers(socks[-500:])
    read_answers(socks[len(socks) - len(socks) % 500:])
    time.sleep(3)
    after = rss_kb(proc.pid)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""
        except BlockingIOError:
            alive += 1
        s.close()
    return (after - before) / 1024.0, before / 1024.0, f"{served} / {alive}"


results = {}  # (proxy, proto, conns) -> [(rps, p50, p99, errs)]
memory = {}
bench.start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/backend.err", "-c", f"{tmp}/backend.conf"])
wait_port(BACKEND, "the backend")
try:
    for r in range(ROUNDS):
        for name in PROXIES:
            p = start_proxy(name)
            http, https = PORTS[name]
            # Warm the pools and the TLS session caches alike.
            bench.wrk(f"http://127.0.0.1:{http}/", 16)
            for c in CONNS:
                results.setdefault((name, "HTTP/1.1", c), []).append(bench.wrk(f"http://127.0.0.1:{http}/", c))
                results.setdefault((name, "HTTPS/1.1", c), []).append(bench.wrk(f"https://127.0.0.1:{https}/", c))
                results.setdefault((name, "HTTPS/2", c), []).append(bench.h2load(https, c))
            if r == 0:
                memory[name] = idle_memory(name, p)
            bench.stop(p)
            time.sleep(1)
finally:
    bench.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)


print(f"SECS={SECS} ROUNDS={ROUNDS} (median of rounds)\n")
print("| protocol | conns | podnet req/s | nginx req/s | haproxy req/s | podnet/nginx | podnet p50/p99 ms | nginx p50/p99 ms | haproxy p50/p99 ms | errors (podnet/nginx/haproxy) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for proto in ["HTTP/1.1", "HTTPS/1.1", "HTTPS/2"]:
    for c in CONNS:
        row = {n: results[(n, proto, c)] for n in ["podnet", "nginx", "haproxy"]}
        rps = {n: med(v, 0) for n, v in row.items()}
        lat = {n: f"{med(v, 1):.3f} / {med(v, 2):.3f}" for n, v in row.items()}
        errs = "/".join(failures(v[-1]) for v in row.values())
        print(f"| {proto} | {c} | {rps['podnet']:.0f} | {rps['nginx']:.0f} | {rps['haproxy']:.0f} | "
              f"{rps['podnet'] / rps['nginx']:.2f} | {lat['podnet']} | {lat['nginx']} | {lat['haproxy']} | {errs} |")
print()
print(f"| memory with {IDLE} idle keep-alive connections | podnet | nginx | haproxy |")
print("|---|---|---|---|")
print("| RSS before (MB) | " + " | ".join(f"{memory[n][1]:.1f}" for n in ["podnet", "nginx", "haproxy"]) + " |")
print("| RSS growth (MB) | " + " | ".join(f"{memory[n][0]:.1f}" for n in ["podnet", "nginx", "haproxy"]) + " |")
print("| answered / still open after 3 s | " + " | ".join(str(memory[n][2]) for n in ["podnet", "nginx", "haproxy"]) + " |")
if BASELINE:
    print()
    print(f"| protocol | conns | podnet req/s | baseline req/s ({BASELINE}) | podnet/baseline | podnet p50/p99 ms | baseline p50/p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for proto in ["HTTP/1.1", "HTTPS/1.1", "HTTPS/2"]:
        for c in CONNS:
            a, b = results[("podnet", proto, c)], results[("baseline", proto, c)]
            print(f"| {proto} | {c} | {med(a, 0):.0f} | {med(b, 0):.0f} | {med(a, 0) / med(b, 0):.2f} | "
                  f"{med(a, 1):.3f} / {med(a, 2):.3f} | {med(b, 1):.3f} / {med(b, 2):.3f} |")
    print(f"| RSS growth with {IDLE} idle connections (MB) | {memory['podnet'][0]:.1f} | {memory['baseline'][0]:.1f} | | | |")
