#!/usr/bin/env python3
"""Init alone, without the cold-start harness's HTTP server: exec to the first bytes of the first
request, on a bare listening socket, N starts per binary, median, min and p90.

Each argument is a binary, optionally followed by environment settings for it, comma-separated:
    python3 bench/inittime.py target/release/snapshot target/release/snapshot,BACKSTOP_TLS_ROOTS=system
N (environment, default 60) sets the starts per binary. No emulator is needed: AWS_ENDPOINT_URL
points at a closed port, and the process is killed once it has asked for its first event.
The README's Cold start section gives figures from it, and that of a C program that only
connects and writes its request (the floor of this loop).
"""

import os
import socket
import statistics
import subprocess
import sys
import time

N = int(os.environ.get("N", "60"))
ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    "AWS_LAMBDA_LOG_LEVEL": "ERROR",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "BACKSTOP_CATALOG_TABLE": "bench-catalog",
    "BACKSTOP_TABLES": "BenchTable",
}


def one(cmd, extra):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    env = dict(ENV, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{listener.getsockname()[1]}", **extra)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.settimeout(30)
    conn, _ = listener.accept()
    conn.recv(100)
    elapsed = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    conn.close()
    listener.close()
    return elapsed * 1000


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        binary, *settings = arg.split(",")
        extra = dict(kv.split("=", 1) for kv in settings)
        times = sorted(one([binary], extra) for _ in range(N))
        print(f"{arg:<60} median {statistics.median(times):6.2f} ms  min {times[0]:6.2f}  p90 {times[int(0.9 * (N - 1))]:6.2f}")


if __name__ == "__main__":
    main()
