"""Runs the Gateway-versus-Ingress benchmark (see bench/gateway.sh) and prints a Markdown table:
requests per second and p50/p99 latency of each path, and the ratio gateway/ingress."""

import shutil
import sys
import tempfile

from edgebench import Bench, med, wait_port

BENCH, SECS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BACKEND = 18091
PORTS = {"ingress": (18190, 18543), "gateway": (18191, 18544)}
CONNS = [1, 16, 256]
tmp = tempfile.mkdtemp(prefix="podnet-gateway-bench-")
bench = Bench(tmp, SECS)
crt, key = bench.certificate()
with open(f"{tmp}/backend.conf", "w") as f:
    f.write(f"""worker_processes 1; daemon off; master_process off; pid {tmp}/b.pid;
error_log {tmp}/b.err; events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/p;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{BACKEND} backlog=4096; location / {{ return 200 "hello\\n"; }} }} }}
""")


results = {}
bench.start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/b.err", "-c", f"{tmp}/backend.conf"])
wait_port(BACKEND, "the backend")
try:
    # Both proxies run side by side on core 1, each loaded in turn, point by point, the order
    # alternating every round: drift of the machine falls on both alike.
    for mode, (http, https) in PORTS.items():
        bench.start(["taskset", "-c", "1", BENCH, mode, f"127.0.0.1:{http}", f"127.0.0.1:{https}",
                     f"127.0.0.1:{BACKEND}", "1", crt, key])
        wait_port(http, mode)
        wait_port(https, mode)
        bench.wrk(f"http://127.0.0.1:{http}/", 16)  # warm the pool
    for r in range(ROUNDS):
        for c in CONNS:
            for mode in (["ingress", "gateway"] if r % 2 == 0 else ["gateway", "ingress"]):
                http, https = PORTS[mode]
                results.setdefault((mode, "HTTP/1.1", c), []).append(bench.wrk(f"http://127.0.0.1:{http}/", c))
                results.setdefault((mode, "HTTPS/1.1", c), []).append(bench.wrk(f"https://127.0.0.1:{https}/", c))
                results.setdefault((mode, "HTTPS/2", c), []).append(bench.h2load(https, c))
finally:
    bench.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

print(f"SECS={SECS} ROUNDS={ROUNDS} (median of rounds)\n")
print("| protocol | conns | ingress req/s | gateway req/s | gateway/ingress | ingress p50/p99 ms | gateway p50/p99 ms | failed (ingress/gateway) |")
print("|---|---|---|---|---|---|---|---|")
for proto in ["HTTP/1.1", "HTTPS/1.1", "HTTPS/2"]:
    for c in CONNS:
        i, g = results[("ingress", proto, c)], results[("gateway", proto, c)]
        print(f"| {proto} | {c} | {med(i, 0):.0f} | {med(g, 0):.0f} | {med(g, 0) / med(i, 0):.2f} | "
              f"{med(i, 1):.3f} / {med(i, 2):.3f} | {med(g, 1):.3f} / {med(g, 2):.3f} | "
              f"{sum(x[3] for x in i)}/{sum(x[3] for x in g)} |")
