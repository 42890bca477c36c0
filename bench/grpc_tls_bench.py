"""gRPC and TLS passthrough through the Gateway (issue 26; bench/grpc_tls.sh), side by side in
the same run, direct against through the proxy, alternating point by point (the order swapped
every round):
- gRPC unary calls: a gRPC server over cleartext HTTP/2 (edge_bench grpc-backend, core 0),
  called by h2load (core 0) directly, or through the proxy (core 1) serving a GRPCRoute; 1, 16
  and 64 connections, 10 calls in flight on each; calls/s and p99 from h2load's log;
- TLS passthrough: nginx (core 0) ending TLS and serving a 256 MiB file from memory, fetched
  by curl (core 0) over HTTPS directly, or through the proxy (core 1) passing the TLS bytes
  through by SNI; MB/s, 4 downloads a point.
Prints each round's ratios and the worst."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from edgebench import Bench, wait_port

BENCH, SECS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
GRPC_BACKEND, GRPC_PROXY, TLS_BACKEND, TLS_PROXY_HTTP, TLS_PROXY = 18094, 18194, 18547, 18195, 18548
CONNS = [1, 16, 64]
tmp = tempfile.mkdtemp(prefix="podnet-grpc-tls-bench-")
bench = Bench(tmp, SECS)
crt, key = bench.certificate()
with open(f"{tmp}/empty", "wb") as f:
    f.write(b"\0\0\0\0\0")
big = f"{tmp}/www/big"
os.makedirs(f"{tmp}/www")
with open(big, "wb") as f:
    f.write(os.urandom(1 << 20) * 256)
with open(f"{tmp}/nginx.conf", "w") as f:
    f.write(f"""worker_processes 1; daemon off; master_process off; pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err; events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/p;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s; sendfile on;
  server {{ listen 127.0.0.1:{TLS_BACKEND} ssl; ssl_certificate {crt}; ssl_certificate_key {key};
    root {tmp}/www; }} }}
""")


def grpc(port, conns):
    """h2load's gRPC calls at `port`: (calls/s, p50 ms, p99 ms, failed)."""
    log = f"{tmp}/h2load.log"
    if os.path.exists(log):
        os.remove(log)
    out = bench.run(["taskset", "-c", "0", "h2load", "-t1", f"-c{conns}", "-m10", "-D", str(SECS),
                     "-d", f"{tmp}/empty", "-H", "content-type: application/grpc",
                     "-H", "te: trailers", f"--log-file={log}",
                     f"http://127.0.0.1:{port}/bench.Echo/Say"])
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())
    ok = sum(1 for l in open(log) if l.split()[1] == "200")

    def p(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0

    failed = int(re.search(r"(\d+) failed", out).group(1)) + (len(lat) - ok)
    return rps, p(0.50), p(0.99), failed


def download(port):
    """curl's HTTPS download of the big file at `port` (SNI bench.example.com): MB/s, the
    median of 4."""
    speeds = []
    for _ in range(4):
        out = bench.run(["taskset", "-c", "0", "curl", "-sS", "--resolve",
                         f"bench.example.com:{port}:127.0.0.1", "--cacert", crt, "-o", "/dev/null",
                         "-w", "%{speed_download} %{size_download}",
                         f"https://bench.example.com:{port}/big"])
        speed, size = out.split()
        if int(size) != 256 << 20:
            raise SystemExit(f"a download of {size} bytes at {port}")
        speeds.append(float(speed) / 1e6)
    return sorted(speeds)[len(speeds) // 2]


results = {}
try:
    bench.start(["taskset", "-c", "0", BENCH, "grpc-backend", f"127.0.0.1:{GRPC_BACKEND}"])
    wait_port(GRPC_BACKEND, "the gRPC backend")
    bench.start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/nginx.err", "-c", f"{tmp}/nginx.conf"])
    wait_port(TLS_BACKEND, "nginx")
    bench.start(["taskset", "-c", "1", BENCH, "gateway-grpc", f"127.0.0.1:{GRPC_PROXY}",
                 "127.0.0.1:18549", f"127.0.0.1:{GRPC_BACKEND}", "1", crt, key])
    wait_port(GRPC_PROXY, "the gRPC proxy")
    bench.start(["taskset", "-c", "1", BENCH, "gateway-tls", f"127.0.0.1:{TLS_PROXY_HTTP}",
                 f"127.0.0.1:{TLS_PROXY}", f"127.0.0.1:{TLS_BACKEND}", "1", crt, key])
    wait_port(TLS_PROXY, "the TLS proxy")
    grpc(GRPC_PROXY, 16)  # warm the pools
    points = [("direct", GRPC_BACKEND), ("gateway", GRPC_PROXY)]
    tls_points = [("direct", TLS_BACKEND), ("gateway", TLS_PROXY)]
    for r in range(ROUNDS):
        order = (lambda xs: xs) if r % 2 == 0 else (lambda xs: list(reversed(xs)))
        for c in CONNS:
            for name, port in order(points):
                results.setdefault(("grpc", name, c), []).append(grpc(port, c))
        for name, port in order(tls_points):
            results.setdefault(("tls", name), []).append(download(port))
finally:
    bench.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

print(f"SECS={SECS} ROUNDS={ROUNDS}\n")
print("gRPC unary calls (h2c, 10 in flight per connection):\n")
print("| conns | direct calls/s (per round) | gateway calls/s (per round) | gateway/direct calls/s, worst | p99 ms direct / gateway, per round | gateway/direct p99, worst | failed |")
print("|---|---|---|---|---|---|---|")
for c in CONNS:
    a, b = results[("grpc", "direct", c)], results[("grpc", "gateway", c)]
    rps = [y[0] / x[0] for x, y in zip(a, b)]
    p99 = [y[2] / x[2] for x, y in zip(a, b)]
    print(f"| {c} | {', '.join(f'{x[0]:.0f}' for x in a)} | {', '.join(f'{y[0]:.0f}' for y in b)} | "
          f"{min(rps):.2f}x | {', '.join(f'{x[2]:.2f} / {y[2]:.2f}' for x, y in zip(a, b))} | "
          f"{max(p99):.2f}x | {sum(x[3] for x in a)}/{sum(y[3] for y in b)} |")
print("\nTLS passthrough, a 256 MiB HTTPS download (median of 4 a round):\n")
print("| direct MB/s (per round) | through the Gateway MB/s (per round) | gateway/direct, per round | worst |")
print("|---|---|---|---|")
a, b = results[("tls", "direct")], results[("tls", "gateway")]
ratios = [y / x for x, y in zip(a, b)]
print(f"| {', '.join(f'{x:.0f}' for x in a)} | {', '.join(f'{y:.0f}' for y in b)} | "
      f"{', '.join(f'{r:.2f}x' for r in ratios)} | {min(ratios):.2f}x |")
