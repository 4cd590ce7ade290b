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

from coldstart import function_env

N = int(os.environ.get("N", "60"))
# The cold-start benchmark's environment, with AWS pointed at a closed port.
ENV = function_env("http://127.0.0.1:9")

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
