"""A/B of two edge_bench builds at 16 connections over HTTP/1.1, each run coming after 2.5 s
with no request (when the edge gives freed memory back): is the first burst after that slower?
Both behind one nginx backend on core 0, the proxies on core 1, wrk on core 0; rounds in
alternating order. Needs nginx and wrk (bench/ingress.sh installs them).
  python3 bench/edge_burst_ab.py <edge_bench A> <edge_bench B> [ROUNDS]"""
import sys, time, tempfile, statistics, os, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edgebench import Bench
NEW, OLD = sys.argv[1], sys.argv[2]  # A ("new") and B ("old")
tmp = tempfile.mkdtemp(prefix="podnet-ab16-")
b = Bench(tmp, 4)
crt, key = b.certificate()
open(f"{tmp}/backend.conf", "w").write(f"""
worker_processes 1; daemon off; master_process off; pid {tmp}/b.pid; error_log {tmp}/b.err;
events {{ worker_connections 4000; }}
http {{ access_log off; client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s; keepalive_requests 1000000;
server {{ listen 127.0.0.1:18081 reuseport backlog=4096; location / {{ return 200 "hello\\n"; }} }} }}
""")
def wait(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port}")
b.start(["taskset", "-c", "0", "nginx", "-e", f"{tmp}/b.err", "-c", f"{tmp}/backend.conf"]); wait(18081)
res = {"new": [], "old": []}
for name, exe, port in [("new", NEW, 18180), ("old", OLD, 18480)]:
    b.start(["taskset", "-c", "1", exe, "ingress", f"127.0.0.1:{port}", f"127.0.0.1:{port+363}", "127.0.0.1:18081", "1", crt, key]); wait(port)
    b.wrk(f"http://127.0.0.1:{port}/", 16)
try:
    for r in range(int(sys.argv[3]) if len(sys.argv) > 3 else 4):
        for name, port in ([("new", 18180), ("old", 18480)] if r % 2 == 0 else [("old", 18480), ("new", 18180)]):
            time.sleep(2.5)
            res[name].append(b.wrk(f"http://127.0.0.1:{port}/", 16)[0])
finally:
    b.stop_all()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
for k, v in res.items():
    print(k, [round(x) for x in v], "median", round(statistics.median(v)))
print("new/old per round:", [round(a / o, 3) for a, o in zip(res["new"], res["old"])])
