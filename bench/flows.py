"""The flow log's cost and speed, in a lab of the seeds (3 nodes; needs root and a release
build of podnet):
  1. new connections per second from a frontend pod to a my-app pod (allowed), in rounds:
     with the flow log's sample at 0 (drops only: the default) and at 1%, and (sample 0)
     while a my-api pod floods my-app with denied SYNs at about 10,000 per second;
  2. the time from a denied SYN sent to its flow in `lab observe --follow` (p50, p99);
  3. the agent's CPU (my-app's node) while 10,000 denied SYNs per second come.
  PODNET=target/release/podnet ROUNDS=3 SECS=4 python3 bench/flows.py"""
import json, os, statistics, subprocess, sys, threading, time

PODNET = os.environ.get("PODNET", "target/release/podnet")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECS = float(os.environ.get("SECS", "4"))
SEEDS = ["examples/seeds/workloads.yaml", "examples/seeds/service.yaml",
         "examples/seeds/network-policy.yaml", "examples/seeds/network-policy-frontend.yaml"]

def podnet(*args, check=True):
    o = subprocess.run([PODNET, *args], capture_output=True, text=True)
    if check and o.returncode != 0:
        raise SystemExit(f"podnet {' '.join(args)}: {o.stderr}")
    return o.stdout

def up(name, sample):
    podnet("lab", "down", "--name", name, check=False)
    args = ["lab", "up", "--name", name]
    for f in SEEDS:
        args += ["-f", f]
    podnet(*args, "--flow-sample", str(sample))
    st = json.loads(podnet("lab", "status", "--name", name, "-o", "json"))
    pod = lambda prefix: next(p for p in st["pods"] if p["name"].startswith(prefix))
    return st, pod("my-app-"), pod("my-api-"), pod("frontend-")

def key(p):
    return f"{p['namespace']}/{p['name']}"

def exec_py(lab, pod, script, *args):
    return subprocess.run([PODNET, "lab", "exec", "--name", lab, key(pod), "--", "python3", "-c", script, *map(str, args)],
                          capture_output=True, text=True)

CONNECT = r"""
import socket, struct, sys, time
ip, secs = sys.argv[1], float(sys.argv[2])
n, t = 0, time.time()
while time.time() - t < secs:
    s = socket.create_connection((ip, 80), timeout=1)
    # Closed with a reset: no TIME_WAIT left to use up the client's ports across rounds.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close(); n += 1
print(n / (time.time() - t))
"""

FLOOD = r"""
import socket, struct, sys, time
src, dst, rate, secs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
t0, i = time.time(), 0
while time.time() - t0 < secs:
    for _ in range(100):
        h = struct.pack("!HHIIBBHHH", 1024 + i % 64000, 80, i, 0, 5 << 4, 2, 64240, 0, 0)
        s.sendto(h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:], (dst, 0)); i += 1
    ahead = i / rate - (time.time() - t0)
    if ahead > 0: time.sleep(ahead)
print(i / (time.time() - t0))
"""

# Single SYNs at known times, each from its own source port (the flow's source port): the
# host-side reader of `lab observe --follow` matches them.
PROBES = r"""
import socket, struct, sys, time
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
for i in range(n):
    sport = 60000 + i
    h = struct.pack("!HHIIBBHHH", sport, 80, i, 0, 5 << 4, 2, 64240, 0, 0)
    t = time.time()
    s.sendto(h[:16] + struct.pack("!H", csum(pseudo + h)) + h[18:], (dst, 0))
    print(sport, t, flush=True)
    time.sleep(0.02)
"""

def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def agent_pid(lab, node):
    d = f"/run/podnet/{lab}/agents"
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try: a = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError: continue
        if len(a) > 2 and a[1] == b"agent" and d.encode() in a and node.encode() in a:
            return int(p)

def diagnose(lab, pods):
    """What each pod's network namespace counted: a lost SYN or SYN-ACK shows as a listen
    queue overflow on the server, a drop on an interface, or a retransmitted SYN."""
    out = []
    for p in pods:
        o = subprocess.run([PODNET, "lab", "exec", "--name", lab, key(p), "--", "sh", "-c",
                            "nstat -az | grep -E 'ListenOverflows|ListenDrops|TCPTimeouts|TcpExtTCPSynRetrans|TcpRetransSegs|TcpExtTCPBacklogDrop|TcpExtPAWS' ; ip -s link show eth0"],
                            capture_output=True, text=True)
        out.append(f"--- {key(p)}:\n{o.stdout}{o.stderr}")
    return "\n".join(out)

def main():
    results = {"sample 0": [], "sample 1%": [], "sample 0, flood": []}
    labs = {0: "fl0", 1: "fl1"}
    pods = {s: up(labs[s], s) for s in (0, 1)}
    try:
        for r in range(ROUNDS):
            for name, s, flood in [("sample 0", 0, False), ("sample 1%", 1, False), ("sample 0, flood", 0, True)]:
                st, app, api, front = pods[s]
                th = None
                if flood:
                    th = threading.Thread(target=exec_py, args=(labs[s], api, FLOOD, api["ip"], app["ip"], 10000, SECS + 1))
                    th.start(); time.sleep(0.5)
                o = exec_py(labs[s], front, CONNECT, app["ip"], SECS)
                if o.returncode != 0:
                    raise SystemExit(f"{name}, round {r + 1}: the client failed: {o.stderr}\n" + diagnose(labs[s], [front, app]))
                results[name].append(float(o.stdout.strip()))
                if th: th.join()
        print("new connections per second, frontend -> my-app:80 (allowed), %d rounds of %.0f s:" % (ROUNDS, SECS))
        base = results["sample 0"]
        for name, v in results.items():
            ratios = [b / x for b, x in zip(base, v)]
            print(f"  {name:<18} " + ", ".join(f"{x:.0f}" for x in v) + f"   cost vs sample 0 per round: " + ", ".join(f"{x:.3f}x" for x in ratios))
        # 2. Drop -> record latency.
        st, app, api, front = pods[0]
        obs = subprocess.Popen([PODNET, "lab", "observe", "--name", labs[0], "--follow", "-o", "json", "--verdict", "DROPPED"],
                               stdout=subprocess.PIPE, text=True)
        seen = {}
        def read():
            for line in obs.stdout:
                f = json.loads(line); seen.setdefault(f["source"]["port"], time.time())
        threading.Thread(target=read, daemon=True).start()
        time.sleep(1)
        o = exec_py(labs[0], api, PROBES, api["ip"], app["ip"], 200)
        time.sleep(1); obs.kill()
        sent = {int(a): float(b) for a, b in (l.split() for l in o.stdout.split("\n") if l.strip())}
        lat = sorted((seen[p] - t) * 1000 for p, t in sent.items() if p in seen)
        print(f"a denied SYN to its flow in lab observe --follow: {len(lat)} of {len(sent)} seen; p50 {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms, max {lat[-1]:.1f} ms")
        # 3. The agent's CPU at 10,000 denied SYNs per second.
        pid = agent_pid(labs[0], app["node"])
        for r in range(ROUNDS):
            c0, t0 = cpu_seconds(pid), time.time()
            o = exec_py(labs[0], api, FLOOD, api["ip"], app["ip"], 10000, 5)
            time.sleep(0.5)
            c1, t1 = cpu_seconds(pid), time.time()
            print(f"the agent of {app['node']} at {float(o.stdout):.0f} denied SYNs/s: {100 * (c1 - c0) / (t1 - t0):.1f}% of a core (round {r + 1})")
    finally:
        for l in labs.values():
            podnet("lab", "down", "--name", l, check=False)

main()
