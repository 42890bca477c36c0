"""The cost of a 100% RequestMirror on the client (issue 26; see bench/mirror.sh): the same
proxy binary twice on core 1, one serving a Gateway route to nginx, one the same route with
every request copied to a second nginx; wrk at 1, 16 and 256 connections, the two alternating
point by point (the order swapped every round). Prints each round's ratios and the worst."""

import shutil
import sys
import tempfile

from edgebench import Bench, med, wait_port

BENCH, SECS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BACKEND, MIRROR = 18092, 18093
PORTS = {"gateway": (18192, 18545), "gateway-mirror": (18193, 18546)}
CONNS = [1, 16, 256]
tmp = tempfile.mkdtemp(prefix="podnet-mirror-bench-")
bench = Bench(tmp, SECS)
crt, key = bench.certificate()
for name, port in [("backend", BACKEND), ("mirror", MIRROR)]:
    with open(f"{tmp}/{name}.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; master_process off; pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err; events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {tmp}/cb{name}; proxy_temp_path {tmp}/p{name};
  fastcgi_temp_path {tmp}/f{name}; uwsgi_temp_path {tmp}/u{name}; scgi_temp_path {tmp}/s{name};
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "hello\\n"; }} }} }}
""")

results = {}
for name, port in [("backend", BACKEND), ("mirror", MIRROR)]:
    bench.start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/{name}.err", "-c", f"{tmp}/{name}.conf"])
    wait_port(port, name)
try:
    for mode, (http, https) in PORTS.items():
        bench.start(["taskset", "-c", "1", BENCH, mode, f"127.0.0.1:{http}", f"127.0.0.1:{https}",
                     f"127.0.0.1:{BACKEND}", "1", crt, key, f"127.0.0.1:{MIRROR}"])
        wait_port(http, mode)
        bench.wrk(f"http://127.0.0.1:{http}/", 16)  # warm the pools
    for r in range(ROUNDS):
        for c in CONNS:
            for mode in (list(PORTS) if r % 2 == 0 else list(reversed(PORTS))):
                http, _ = PORTS[mode]
                results.setdefault((mode, c), []).append(bench.wrk(f"http://127.0.0.1:{http}/", c))
finally:
    bench.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

print(f"SECS={SECS} ROUNDS={ROUNDS}\n")
print("| conns | no mirror req/s (median) | 100% mirror req/s (median) | p99 ms, no mirror / mirror, per round | mirror/none p99, per round | worst | failed |")
print("|---|---|---|---|---|---|---|")
for c in CONNS:
    a, b = results[("gateway", c)], results[("gateway-mirror", c)]
    ratios = [y[2] / x[2] for x, y in zip(a, b)]
    p99s = ", ".join(f"{x[2]:.3f} / {y[2]:.3f}" for x, y in zip(a, b))
    print(f"| {c} | {med(a, 0):.0f} | {med(b, 0):.0f} | {p99s} | "
          f"{', '.join(f'{r:.2f}x' for r in ratios)} | {max(ratios):.2f}x | "
          f"{sum(x[3] for x in a)}/{sum(x[3] for x in b)} |")
