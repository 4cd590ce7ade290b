#!/usr/bin/env python3
"""Cold start: time from exec to the first response posted, Rust vs Python, on loopback.

A minimal Lambda Runtime API (the three calls a runtime makes) serves one invocation to a freshly
started process and records when its response arrives. Both functions build real SDK clients
against a local moto and do the same work: a dry-run snapshot of one table (catalog GetItem,
DescribeTable, DescribeContinuousBackups), answering with a JSON report. Each is started `--runs`
times; the table shows medians, p90 and peak RSS (VmHWM of the process, read just after it
answered).

"init" is exec to the first request for an event, timed when the Runtime API accepts the
connection that carries it (each function opens it only to send that request). Until
2026-12-03 it was timed when the harness's handler thread had parsed the request, which adds
the harness's own thread start and header parsing (0.4 to 0.9 ms) to both sides; that figure
is still printed ("init parsed"). A shell that only asks for the first event gives the floor:
the harness's fork, exec and server, inside every init figure.

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
        self.asked = threading.Event()
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
                api.asked.set()
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

        class Server(ThreadingHTTPServer):
            def get_request(self):
                conn = super().get_request()
                if api.first_connect is None:
                    api.first_connect = time.perf_counter()
                return conn

        self.first_connect = None
        self.port = free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
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


def start(cmd, env, event, stderr=subprocess.DEVNULL):
    """Starts `cmd` against a Runtime API of its own serving `event`; returns (api, proc, t0)."""
    # A fresh Runtime API (and port) per start: a killed process's late request for its next
    # event can then never take the event meant for the next process.
    api = RuntimeApi(event)
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api.port}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    return api, proc, t0


def stop(api, proc):
    proc.kill()
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    api.done.set()
    api.server.shutdown()
    api.server.server_close()


def measure(cmd, env, event, runs):
    times, rss, inits, parsed = [], [], [], []
    for _ in range(runs):
        api, proc, t0 = start(cmd, env, event, stderr=subprocess.PIPE)
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
        stop(api, proc)
        times.append(elapsed * 1000)
        inits.append((api.first_connect - t0) * 1000)
        parsed.append((api.first_get - t0) * 1000)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "min_ms": times[0],
        "init_ms": statistics.median(inits),
        "parsed_ms": statistics.median(parsed),
        "rss_mib": statistics.median(rss),
        "rss_max_mib": max(rss),
    }


# The harness's own share of every init figure: a shell that does nothing but ask for the first
# event (bash's /dev/tcp), started and timed exactly as the functions are.
FLOOR = [
    "bash",
    "-c",
    'exec 3<>"/dev/tcp/${AWS_LAMBDA_RUNTIME_API%:*}/${AWS_LAMBDA_RUNTIME_API#*:}"; '
    'printf "GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" >&3; exec sleep 30',
]


def measure_floor(env, event, runs):
    inits = []
    for _ in range(runs):
        api, proc, t0 = start(FLOOR, env, event)
        if not api.asked.wait(30):
            proc.kill()
            sys.exit("the floor shell never asked for an event (is bash built with /dev/tcp?)")
        inits.append((api.first_connect - t0) * 1000)
        stop(api, proc)
    return statistics.median(inits)


def function_env(endpoint):
    """The environment both functions start with: Lambda's variables, the AWS endpoint, region
    and dummy credentials, and Backstop's catalog and table."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_LEVEL": "ERROR",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BACKSTOP_CATALOG_TABLE": CATALOG,
        "BACKSTOP_TABLES": TABLE,
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
        env = function_env(url)
        results = []
        for binary in args.rust:
            if Path(binary).exists():
                path = Path(binary)
                # target/<profile>/snapshot is named by its profile; any other binary by its name.
                label = "Rust " + (path.parent.name if path.parent.parent.name == "target" else path.name)
                results.append((label, os.path.getsize(binary), measure([binary], env, event, args.runs)))
            else:
                print(f"(skipping {binary}: not built)", file=sys.stderr)
        if not results:
            sys.exit("no Rust binary built: cargo build --release -p snapshot")
        py = [sys.executable, str(ROOT / "bench/python_function.py")]
        results.append(("Python boto3", None, measure(py, env, event, args.runs)))
        floor = measure_floor(env, event, args.runs)
    finally:
        moto.terminate()

    print(
        f"\nCold start, {args.runs} runs each: init = exec -> first /next request accepted (parsed: read by the "
        "harness); median/p90/min = exec -> response posted\n"
    )
    head = ["function", "binary", "init ms", "init parsed ms", "median ms", "p90 ms", "min ms", "peak RSS MiB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in head) + "|")
    for label, size, r in results:
        cells = [
            label,
            f"{size / 1e6:.1f} MB" if size else "-",
            *(f"{r[k]:.1f}" for k in ("init_ms", "parsed_ms", "median_ms", "p90_ms", "min_ms", "rss_mib")),
        ]
        print("| " + " | ".join(c.rjust(len(h)) if i else c.ljust(20) for i, (c, h) in enumerate(zip(cells, head))) + " |")
    python = results[-1][2]
    print(
        f"\nHarness floor: {floor:.1f} ms from exec to the first request accepted, for a shell that does nothing "
        "else (Python's fork and exec, its HTTP server): it is inside every init figure above."
    )
    print()
    ok = True
    for label, _, r in results[:-1]:
        i_ratio = r["init_ms"] / python["init_ms"]
        t_ratio = r["median_ms"] / python["median_ms"]
        m_ratio = r["rss_mib"] / python["rss_mib"]
        ok &= i_ratio <= 0.02 and t_ratio <= 0.1 and m_ratio <= 1 / 3
        print(
            f"{label}: init {i_ratio:.3f} of Python (goal <= 0.020), time {t_ratio:.3f} (goal <= 0.100), "
            f"peak RSS {m_ratio:.3f} (goal <= 0.333)"
        )
    print("\ngoals met" if ok else "\ngoals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
