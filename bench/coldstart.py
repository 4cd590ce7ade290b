#!/usr/bin/env python3
"""Cold start: time from exec to the first response posted, Rust vs Python, on loopback.

A minimal Lambda Runtime API (the three calls a runtime makes) serves one invocation to a freshly
started process and records when its response arrives. Both functions build real SDK clients
against a local moto and do the same work: a dry-run snapshot of one table (catalog GetItem,
DescribeTable, DescribeContinuousBackups), answering with a JSON report. Each is started `--runs`
times; the table shows medians, p90 and peak RSS (VmHWM of the process, read just after it
answered).

Usage: python3 bench/coldstart.py [--runs 20] [--rust target/release/snapshot ...]
Build first: cargo build --release -p snapshot   (make bench does both)
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "BenchTable"
CATALOG = "bench-catalog"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RuntimeApi:
    """Serves one event per process start; records when the response is posted."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.done = threading.Event()
        self.response = None
        self.served = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                if api.served:
                    # The process asks for a second event after answering: hold it until killed.
                    api.done.wait(30)
                    time.sleep(30)
                    return
                api.served = True
                api.first_get = time.perf_counter()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"
                )
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(api.event)))
                self.end_headers()
                self.wfile.write(api.event)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                api.response = (self.path, body)
                api.at = time.perf_counter()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                api.done.set()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_moto():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto did not start: pip install -r requirements-dev.txt")


def provision(url):
    import boto3

    ddb = boto3.client(
        "dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    for name, keys in ((CATALOG, ["pk", "sk"]), (TABLE, ["id"])):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ["HASH", "RANGE"])],
        )


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError(f"no VmHWM for {pid}")


def measure(cmd, env, event, runs):
    times, rss, inits = [], [], []
    for _ in range(runs):
        # A fresh Runtime API (and port) per start: a killed process's late request for its
        # next event can then never take the event meant for the next process.
        api = RuntimeApi(event)
        env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api.port}")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not api.done.wait(60):
            proc.kill()
            sys.exit(f"{cmd[0]}: no response within 60 s: {proc.stderr.read().decode()[-2000:]}")
        elapsed = api.at - t0
        path, body = api.response
        if not path.endswith("/response"):
            proc.kill()
            sys.exit(f"{cmd[0]}: the invocation failed: {body.decode()[:2000]}")
        report = json.loads(body)
        assert report["dry_run"] and report["targets"][0]["table"] == TABLE, report
        # Peak RSS of the program itself: VmHWM starts afresh at exec, unlike ru_maxrss, which
        # also counts the forked copy of this Python process before the exec.
        rss.append(peak_rss_mib(proc.pid))
        proc.kill()
        proc.wait()
        proc.stderr.close()
        api.server.shutdown()
        api.server.server_close()
        times.append(elapsed * 1000)
        inits.append((api.first_get - t0) * 1000)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "min_ms": times[0],
        "init_ms": statistics.median(inits),
        "rss_mib": statistics.median(rss),
        "rss_max_mib": max(rss),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument(
        "--rust",
        nargs="+",
        default=[str(ROOT / "target/release/snapshot"), str(ROOT / "target/release-o3/snapshot")],
        help="Rust binaries to measure (missing ones are skipped)",
    )
    args = ap.parse_args()

    moto, url = start_moto()
    try:
        provision(url)
        event = {"tables": [TABLE], "dry_run": True, "slot": "2026-11-22T02:00:00Z"}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_LEVEL": "ERROR",
            "AWS_ENDPOINT_URL": url,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_EC2_METADATA_DISABLED": "true",
            "BACKSTOP_CATALOG_TABLE": CATALOG,
            "BACKSTOP_TABLES": TABLE,
        }
        results = []
        for binary in args.rust:
            if Path(binary).exists():
                label = "Rust " + Path(binary).parent.name
                results.append((label, os.path.getsize(binary), measure([binary], env, event, args.runs)))
            else:
                print(f"(skipping {binary}: not built)", file=sys.stderr)
        if not results:
            sys.exit("no Rust binary built: cargo build --release -p snapshot")
        py = [sys.executable, str(ROOT / "bench/python_function.py")]
        results.append(("Python boto3", None, measure(py, env, event, args.runs)))
    finally:
        moto.terminate()

    print(f"\nCold start, {args.runs} runs each: init = exec -> first /next request; median/p90/min = exec -> response posted\n")
    print(f"| {'function':<20} | {'binary':>9} | {'init ms':>7} | {'median ms':>9} | {'p90 ms':>7} | {'min ms':>7} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 22}|{'-' * 11}|{'-' * 9}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 14}|")
    for label, size, r in results:
        size_s = f"{size / 1e6:.1f} MB" if size else "-"
        print(
            f"| {label:<20} | {size_s:>9} | {r['init_ms']:>7.1f} | {r['median_ms']:>9.1f} | {r['p90_ms']:>7.1f} | {r['min_ms']:>7.1f} | {r['rss_mib']:>12.1f} |"
        )
    python = results[-1][2]
    print()
    ok = True
    for label, _, r in results[:-1]:
        t_ratio = r["median_ms"] / python["median_ms"]
        m_ratio = r["rss_mib"] / python["rss_mib"]
        ok &= t_ratio <= 0.1 and m_ratio <= 1 / 3
        print(
            f"{label}: time {t_ratio:.3f} of Python (goal <= 0.100), peak RSS {m_ratio:.3f} of Python (goal <= 0.333)"
        )
    print("\ngoals met" if ok else "\ngoals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
