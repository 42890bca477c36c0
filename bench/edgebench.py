"""What the edge proxy benchmarks share (bench/ingress_bench.py, bench/gateway_bench.py):
processes started and stopped, ports waited for, a test certificate, and wrk and h2load runs
(pinned to core 0) read back as (requests/s, p50 ms, p99 ms, failed requests, socket errors)."""

import os
import re
import socket
import statistics
import subprocess
import time


class Bench:
    def __init__(self, tmp, secs):
        self.tmp, self.secs, self.procs = tmp, secs, []

    def run(self, cmd):
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def start(self, cmd):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def stop(self, p):
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)

    def certificate(self, name="bench.example.com"):
        """A self-signed P-256 certificate for `name`: (cert path, key path)."""
        crt, key = f"{self.tmp}/tls.crt", f"{self.tmp}/tls.key"
        self.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                  "-addext", f"subjectAltName=DNS:{name}", "-keyout", key, "-out", crt])
        return crt, key

    def wrk(self, url, conns):
        out = self.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{self.secs}s",
                        "--latency", "-H", "Host: bench.example.com", url])
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(r"Socket errors: (.*)", out)

        def pct(p):
            m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
            v, unit = float(m.group(1)), m.group(2)
            return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

        return (rps, pct(50), pct(99), int(bad.group(1)) if bad else 0,
                sock.group(1) if sock else None)

    def h2load(self, port, conns):
        log = f"{self.tmp}/h2load.log"
        if os.path.exists(log):
            os.remove(log)
        out = self.run(["taskset", "-c", "0", "h2load", "-t1", f"-c{conns}", "-m1", "-D",
                        str(self.secs), f"--log-file={log}", f"https://127.0.0.1:{port}/"])
        rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
        lat = sorted(int(l.split()[2]) for l in open(log) if l.strip())

        def p(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0

        return rps, p(0.50), p(0.99), int(re.search(r"(\d+) failed", out).group(1)), None


def wait_port(port, what):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def med(xs, i):
    return statistics.median(x[i] for x in xs)


def failures(x):
    """A run's failed requests, with its socket errors if any."""
    return f"{x[3]}" + (f" ({x[4]})" if x[4] else "")
