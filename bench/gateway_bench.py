"""Runs the Gateway-versus-Ingress benchmark (see bench/gateway.sh) and prints a Markdown table:
requests per second and p50/p99 latency of each path, and the ratio gateway/ingress."""

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH, SECS, ROUNDS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BACKEND = 18091
PORTS = {"ingress": (18190, 18543), "gateway": (18191, 18544)}
CONNS = [1, 16, 256]
tmp = tempfile.mkdtemp(prefix="podnet-gateway-bench-")
procs = []


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append(p)
    return p


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def stop(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    procs.remove(p)


crt, key = f"{tmp}/tls.crt", f"{tmp}/tls.key"
run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
     "-nodes", "-days", "2", "-subj", "/CN=bench.example.com",
     "-addext", "subjectAltName=DNS:bench.example.com", "-keyout", key, "-out", crt])
with open(f"{tmp}/backend.conf", "w") as f:
    f.write(f"""worker_processes 1; daemon off; master_process off; pid {tmp}/b.pid;
error_log {tmp}/b.err; events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/p;
  fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{BACKEND} backlog=4096; location / {{ return 200 "hello\\n"; }} }} }}
""")


def wrk(url, conns):
    out = run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{SECS}s", "--latency",
               "-H", "Host: bench.example.com", url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return rps, pct(50), pct(99), int(bad.group(1)) if bad else 0


def h2load(port, conns):
    log = f"{tmp}/h2load.log"
    if os.path.exists(log):
        os.remove(log)
    out = run(["taskset", "-c", "0", "h2load", "-t1", f"-c{conns}", "-m1", "-D", str(SECS),
               f"--log-file={log}", f"https://127.0.0.1:{port}/"])
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0
    return rps, p(0.50), p(0.99), int(re.search(r"(\d+) failed", out).group(1))


results = {}
backend = start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/b.err", "-c", f"{tmp}/backend.conf"])
wait_port(BACKEND)
try:
    # Both proxies run side by side on core 1, each loaded in turn, point by point, the order
    # alternating every round: drift of the machine falls on both alike.
    for mode, (http, https) in PORTS.items():
        start(["taskset", "-c", "1", BENCH, mode, f"127.0.0.1:{http}", f"127.0.0.1:{https}",
               f"127.0.0.1:{BACKEND}", "1", crt, key])
        wait_port(http)
        wait_port(https)
        wrk(f"http://127.0.0.1:{http}/", 16)  # warm the pool
    for r in range(ROUNDS):
        for c in CONNS:
            for mode in (["ingress", "gateway"] if r % 2 == 0 else ["gateway", "ingress"]):
                http, https = PORTS[mode]
                results.setdefault((mode, "HTTP/1.1", c), []).append(wrk(f"http://127.0.0.1:{http}/", c))
                results.setdefault((mode, "HTTPS/1.1", c), []).append(wrk(f"https://127.0.0.1:{https}/", c))
                results.setdefault((mode, "HTTPS/2", c), []).append(h2load(https, c))
finally:
    for p in list(procs):
        stop(p)
    shutil.rmtree(tmp, ignore_errors=True)

med = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"SECS={SECS} ROUNDS={ROUNDS} (median of rounds)\n")
print("| protocol | conns | ingress req/s | gateway req/s | gateway/ingress | ingress p50/p99 ms | gateway p50/p99 ms | failed (ingress/gateway) |")
print("|---|---|---|---|---|---|---|---|")
for proto in ["HTTP/1.1", "HTTPS/1.1", "HTTPS/2"]:
    for c in CONNS:
        i, g = results[("ingress", proto, c)], results[("gateway", proto, c)]
        print(f"| {proto} | {c} | {med(i, 0):.0f} | {med(g, 0):.0f} | {med(g, 0) / med(i, 0):.2f} | "
              f"{med(i, 1):.3f} / {med(i, 2):.3f} | {med(g, 1):.3f} / {med(g, 2):.3f} | "
              f"{sum(x[3] for x in i)}/{sum(x[3] for x in g)} |")
