#!/usr/bin/env python3
"""Export: Backstop's logical export beside dynamodump, on one local moto; Backstop's peak RSS by
table size; the fingerprint's throughput.

1. One table of --items (20,000) items of ~250 bytes each (strings, numbers, a boolean, a small
   map, a string set), read whole by both tools against the same moto, --runs (3) times each,
   taking turns:
   Backstop's logical export (`backstop run export`: a scan written as gzip DynamoDB JSON to S3,
   fingerprinted, checkpointed in the catalog) and dynamodump's backup (`dynamodump -m backup`:
   a scan written as JSON files in a temporary directory). For each, the run with the median CPU
   time: the client's CPU time (user + sys of the process and its threads), CPU per item, wall
   time and peak RSS, and the spread of the CPU time over the runs.
2. Backstop's peak RSS exporting --rss-small (10,000) and --rss-large (100,000) items: the
   export streams, so the two should be close. --quick skips the large table. Each of those
   exports is then verified (`backstop validate exports --table T --slot S`, table 4): read
   back whole, streamed, so its peak RSS should not grow with the export either.
3. The fingerprint's throughput on one core: shared/examples/fingerprint_bench.rs fingerprints
   200,000 items built in memory (~1.1 KB of canonical DynamoDB JSON each), best of 5, in MB/s
   of that JSON (the goal's unit), and of the binary canonical encoding it hashes.

The table is filled in steps (10,000, 20,000, 100,000 items) and every measurement is made at
its step. Each Backstop run names a slot of its own, so it really exports, and is checked: exit
code 0, and the export's manifest-summary.json counts every item. dynamodump's files are counted
too.

How it measures: each client runs under GNU time (/usr/bin/time), which forks it from its own
small process, so its ru_maxrss is its own peak. (Spawned straight from this Python process, the
child's ru_maxrss would start from this process's own high-water mark, which the kernel carries
over the exec.) CPU time is the rusage os.wait4 returns for the wrapper: the client and
its threads, plus time's own ~1 ms, in microseconds.

Usage: python3 bench/export.py [--items 20000] [--runs 3] [--quick]
Build first: cargo build --release -p backstop-cli; dynamodump from requirements-bench.txt
(make bench-export does both, dynamodump into target/venv-bench).
"""

import argparse
import glob
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "BenchTable"
CATALOG = "bench-catalog"
BUCKET = "bench-exports"
PREFIX = "backstop"
GNU_TIME = "/usr/bin/time"
REGION = "us-east-1"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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
            return proc, port, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto did not start: pip install -r requirements-dev.txt")


def session():
    import boto3

    return boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION)


def provision(url):
    ddb = session().client("dynamodb", endpoint_url=url)
    for name, keys in ((CATALOG, ["pk", "sk"]), (TABLE, ["id"])):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ["HASH", "RANGE"])],
        )
    session().client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)


WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def make_item(i):
    """Item i of the table: the same for every run, ~250 bytes of mixed types."""
    r = random.Random(i)
    return {
        "id": f"item-{i:08d}",
        "name": " ".join(r.choice(WORDS) for _ in range(3)),
        "description": " ".join(r.choice(WORDS) for _ in range(r.randint(10, 16))),
        "price": Decimal(f"{r.randint(0, 99999)}.{r.randint(0, 99):02d}"),
        "quantity": r.randint(0, 5000),
        "created": 1_700_000_000 + i * 37,
        "active": r.random() < 0.7,
        "tags": {f"{r.choice(WORDS)}-{k}" for k in range(r.randint(2, 5))},
        "attrs": {
            "color": r.choice(["red", "green", "blue", "black", "white"]),
            "size": r.randint(1, 60),
            "origin": r.choice(WORDS).upper()[:2],
        },
    }


def item_size(value, name=""):
    """DynamoDB's size of an item (attribute names + values, maps and sets as it counts them)."""
    n = len(name.encode())
    if isinstance(value, dict):
        return n + 3 + sum(1 + item_size(v, k) for k, v in value.items())
    if isinstance(value, str):
        return n + len(value.encode())
    if isinstance(value, bool):
        return n + 1
    if isinstance(value, (int, Decimal)):
        return n + 1 + (len(str(value).replace(".", "").lstrip("-")) + 1) // 2
    if isinstance(value, set):
        return n + sum(item_size(v) for v in value)
    raise TypeError(type(value))


def top_size(item):
    return sum(item_size(v, k) for k, v in item.items())


def load(url, start, stop):
    table = session().resource("dynamodb", endpoint_url=url).Table(TABLE)
    t0 = time.perf_counter()
    with table.batch_writer() as w:
        for i in range(start, stop):
            w.put_item(Item=make_item(i))
            if (i + 1) % 20_000 == 0:
                log(f"  {i + 1:,} items in the table")
    log(f"loaded items {start:,}..{stop:,} in {time.perf_counter() - t0:.0f} s")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure(cmd, env, cwd=None):
    """Runs cmd under GNU time; its figures, exit code, output and error output."""
    with tempfile.TemporaryDirectory() as tmp:
        rfile = os.path.join(tmp, "rusage")
        with open(os.path.join(tmp, "out"), "w+b") as out, open(os.path.join(tmp, "err"), "w+b") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [GNU_TIME, "-o", rfile, "-f", "rusage %M %x", *cmd], env=env, cwd=cwd, stdout=out, stderr=err
            )
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        with open(rfile) as f:
            fields = [line.split() for line in f if line.startswith("rusage ")]
    if not fields:
        sys.exit(f"{cmd[0]}: GNU time wrote no figures (exit {proc.returncode}): {stderr[-2000:]}")
    maxrss_kib, code = int(fields[-1][1]), int(fields[-1][2])
    return {
        "code": code,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "wall_s": wall,
        "rss_mib": maxrss_kib / 1024,
        "stdout": stdout,
        "stderr": stderr,
    }


class Slots:
    """A fresh slot per run, a few minutes in the past, never the same twice."""

    def __init__(self):
        self.last = None

    def next(self):
        t = int(time.time()) - 300
        if self.last is not None and t <= self.last:
            t = self.last + 1
        self.last = t
        return datetime.fromtimestamp(t, timezone.utc)


def base_env():
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def backstop_export(binary, url, items, slots):
    slot = slots.next()
    slot_text = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    env = dict(
        base_env(),
        BACKSTOP_CATALOG_TABLE=CATALOG,
        BACKSTOP_EXPORT_BUCKET=BUCKET,
        BACKSTOP_EXPORT_MODE="logical",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
    )
    with tempfile.TemporaryDirectory() as tmp:
        payload = os.path.join(tmp, "payload.json")
        with open(payload, "w") as f:
            json.dump({"tables": [TABLE], "slot": slot_text}, f)
        log(f"backstop: exporting {items:,} items, slot {slot_text}")
        r = measure([binary, "--endpoint", url, "run", "export", "--event", payload], env, cwd=tmp)
    if r["code"] != 0:
        sys.exit(
            f"backstop export failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}"
        )
    # The export's own count, from the manifest AWS's layout puts under the slot's root.
    s3 = session().client("s3", endpoint_url=url)
    root = f"{PREFIX}/{TABLE}/{slot.strftime('%Y%m%dT%H%M%SZ')}/"
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=root)
        for o in page.get("Contents", [])
    ]
    summaries = [k for k in keys if k.endswith("/manifest-summary.json")]
    if len(summaries) != 1:
        sys.exit(f"backstop export: expected one manifest-summary.json under s3://{BUCKET}/{root}, found {keys}")
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=summaries[0])["Body"].read())
    if summary.get("itemCount") != items:
        sys.exit(f"backstop export: manifest-summary.json says itemCount {summary.get('itemCount')}, the table has {items}")
    r["items"] = items
    r["slot"] = slot_text
    r["env"] = env
    r["stored_bytes"] = sum(
        o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=root)
        for o in page.get("Contents", [])
        if o["Key"].endswith(".json.gz")
    )
    log(f"  {r['cpu_s']:.2f} s CPU, {r['wall_s']:.1f} s wall, {r['rss_mib']:.1f} MiB; manifest: {items:,} items")
    return r


def dynamodump_backup(binary, port, items):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            binary, "-m", "backup", "-r", REGION, "--host", "127.0.0.1", "--port", str(port),
            "--accessKey", "x", "--secretKey", "x", "-s", TABLE,
        ]  # fmt: skip
        log(f"dynamodump: backing up {items:,} items")
        r = measure(cmd, base_env(), cwd=tmp)
        if r["code"] != 0:
            sys.exit(f"dynamodump failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
        files = sorted(glob.glob(os.path.join(tmp, "dump", TABLE, "data", "*.json")))
        count = 0
        for path in files:
            with open(path) as f:
                count += len(json.load(f)["Items"])
        dump_bytes = sum(os.path.getsize(p) for p in files)
    if count != items:
        sys.exit(f"dynamodump wrote {count} items in {len(files)} files; the table has {items}:\n{r['stderr'][-3000:]}")
    r["items"] = items
    r["files"] = len(files)
    r["dump_bytes"] = dump_bytes
    log(f"  {r['cpu_s']:.2f} s CPU, {r['wall_s']:.1f} s wall, {r['rss_mib']:.1f} MiB; {count:,} items in {len(files)} files")
    return r


def median_run(runs):
    """The run with the median CPU time (the lower one of the middle two for an even count), with
    the spread of the CPU time over all runs."""
    ordered = sorted(runs, key=lambda x: x["cpu_s"])
    r = dict(ordered[(len(ordered) - 1) // 2])
    r["cpu_range"] = f"{ordered[0]['cpu_s']:.2f}-{ordered[-1]['cpu_s']:.2f}"
    return r


def backstop_verify(binary, url, export):
    """`backstop validate exports` of the one export just made: read back whole, checked."""
    cmd = [binary, "--endpoint", url, "validate", "exports", "--table", TABLE, "--slot", export["slot"]]
    log(f"backstop: verifying the export of {export['items']:,} items")
    r = measure(cmd, export["env"])
    if r["code"] != 0 or "1 exports read back: 1 verified, 0 failed" not in r["stdout"]:
        sys.exit(f"backstop validate exports failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
    r["items"] = export["items"]
    log(f"  {r['cpu_s']:.2f} s CPU, {r['wall_s']:.1f} s wall, {r['rss_mib']:.1f} MiB")
    return r


def fingerprint_bench(items, reps):
    cmd = [
        "cargo", "run", "--release", "-q", "-p", "backstop-shared", "--example", "fingerprint_bench",
        "--", "--items", str(items), "--reps", str(reps),
    ]  # fmt: skip
    log("fingerprint: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"fingerprint_bench failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        log("  " + line)
    return json.loads(lines[-1])


def dynamodump_version(binary):
    python = Path(binary).parent / "python"
    if python.exists():
        code = "import importlib.metadata as m; print(m.version('dynamodump'))"
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.strip()
    return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000, help="items of the Backstop/dynamodump table")
    ap.add_argument("--runs", type=int, default=3, help="runs of each client on the --items table")
    ap.add_argument("--rss-small", type=int, default=10_000)
    ap.add_argument("--rss-large", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="skip the --rss-large table")
    ap.add_argument("--fingerprint-items", type=int, default=200_000)
    ap.add_argument("--fingerprint-reps", type=int, default=5)
    ap.add_argument("--backstop", default=str(ROOT / "target/release/backstop"))
    venv_dd = ROOT / "target/venv-bench/bin/dynamodump"
    ap.add_argument(
        "--dynamodump",
        default=str(venv_dd) if venv_dd.exists() else shutil.which("dynamodump"),
        help="default: target/venv-bench/bin/dynamodump, else the one on PATH",
    )
    args = ap.parse_args()

    if not Path(args.backstop).exists():
        sys.exit(f"{args.backstop} is not built: cargo build --release -p backstop-cli")
    if not args.dynamodump or not Path(args.dynamodump).exists():
        sys.exit("no dynamodump: pip install -r requirements-bench.txt (make bench-export does it)")
    if not Path(GNU_TIME).exists():
        sys.exit(f"no {GNU_TIME}: apt-get install time")
    dd_version = dynamodump_version(args.dynamodump)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]

    # On one core with nothing else running: before moto starts.
    fp = fingerprint_bench(args.fingerprint_items, args.fingerprint_reps)

    steps = sorted({args.rss_small, args.items} | (set() if args.quick else {args.rss_large}))
    moto, port, url = start_moto()
    slots = Slots()
    sizes = [top_size(make_item(i)) for i in range(1000)]
    backstop, rss, dd, verify = None, {}, None, {}
    try:
        provision(url)
        loaded = 0
        for n in steps:
            load(url, loaded, n)
            loaded = n
            if n == args.items:
                # The two side by side, taking turns; the median runs go in the table.
                bs_runs, dd_runs = [], []
                for _ in range(args.runs):
                    bs_runs.append(backstop_export(args.backstop, url, n, slots))
                    dd_runs.append(dynamodump_backup(args.dynamodump, port, n))
                backstop, dd = median_run(bs_runs), median_run(dd_runs)
                rss[n] = backstop
            else:
                rss[n] = backstop_export(args.backstop, url, n, slots)
            if n in (args.rss_small, args.rss_large):
                verify[n] = backstop_verify(args.backstop, url, rss[n])
    finally:
        moto.terminate()
        moto.wait()
    total = time.perf_counter() - started
    load_after = os.getloadavg()[0]

    ok = True
    print(
        f"\n1. Export of one table, {args.items:,} items of ~{sum(sizes) / len(sizes):.0f} bytes, same moto, {args.runs} runs each"
        " taking turns; each client's run with the median CPU time (CPU = user + sys of the client process and its"
        " threads)\n"
    )
    print(f"| {'client':<26} | {'CPU s':>7} | {'CPU s min-max':>13} | {'user s':>7} | {'sys s':>7} | {'CPU µs/item':>11} | {'wall s':>7} | {'peak RSS MiB':>12} | {'output':>22} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 15}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 14}|{'-' * 24}|")
    for label, r, output in (
        ("Backstop logical export", backstop, f"{backstop['stored_bytes'] / 1e6:.1f} MB gzip in S3"),
        (f"dynamodump {dd_version}", dd, f"{dd['dump_bytes'] / 1e6:.1f} MB JSON, {dd['files']} files"),
    ):
        print(
            f"| {label:<26} | {r['cpu_s']:>7.2f} | {r['cpu_range']:>13} | {r['user_s']:>7.2f} | {r['sys_s']:>7.2f} | {r['cpu_s'] / r['items'] * 1e6:>11.1f} | {r['wall_s']:>7.1f} | {r['rss_mib']:>12.1f} | {output:>22} |"
        )
    ratio = (backstop["cpu_s"] / backstop["items"]) / (dd["cpu_s"] / dd["items"])
    ok &= ratio <= 0.1
    print(f"\nBackstop/dynamodump CPU per item: {ratio:.3f} (goal <= 0.100)")

    print("\n2. Backstop's logical export by table size\n")
    print(f"| {'items':>9} | {'CPU s':>7} | {'CPU µs/item':>11} | {'wall s':>7} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 11}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 14}|")
    for n in sorted(rss):
        r = rss[n]
        print(f"| {n:>9,} | {r['cpu_s']:>7.2f} | {r['cpu_s'] / n * 1e6:>11.1f} | {r['wall_s']:>7.1f} | {r['rss_mib']:>12.1f} |")
    small = rss[args.rss_small]["rss_mib"]
    if args.quick:
        print(f"\nPeak RSS at {args.rss_large:,} items: not measured (--quick)")
        ok &= small < 128
    else:
        large = rss[args.rss_large]["rss_mib"]
        growth = large / small - 1
        ok &= abs(growth) <= 0.10 and max(small, large) < 128
        print(
            f"\nPeak RSS {args.rss_large:,} vs {args.rss_small:,} items: {growth * 100:+.1f} % "
            f"(goal within 10 %), largest {max(small, large):.1f} MiB (goal under 128 MiB)"
        )

    print(
        f"\n3. Fingerprint, one core: {fp['items']:,} items, {fp['json_bytes'] / fp['items']:.0f} bytes of canonical "
        f"DynamoDB JSON each ({fp['binary_bytes'] / fp['items']:.0f} bytes of binary canonical encoding hashed), "
        f"best of {fp['reps']}: {fp['items_per_s']:,.0f} items/s, {fp['json_mb_per_s']:.0f} MB/s of JSON (goal >= 300 MB/s), "
        f"{fp['binary_mb_per_s']:.0f} MB/s of binary encoding"
        f"\n   alone, best of {fp['reps']} each: the canonical encoding {fp['encode_json_mb_per_s']:.0f} MB/s of JSON"
        f" ({fp['encode_binary_mb_per_s']:.0f} of binary), BLAKE3 over its bytes {fp['hash_mb_per_s']:.0f} MB/s"
        f" ({fp['hash_json_mb_per_s']:.0f} MB/s of JSON)"
    )
    ok &= fp["json_mb_per_s"] >= 300

    print("\n4. Verification of those exports (`backstop validate exports --slot`: read back whole, every MD5, count and the fingerprint checked)\n")
    print(f"| {'items':>9} | {'CPU s':>7} | {'CPU µs/item':>11} | {'wall s':>7} | {'peak RSS MiB':>12} |")
    print(f"|{'-' * 11}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 14}|")
    for n in sorted(verify):
        r = verify[n]
        print(f"| {n:>9,} | {r['cpu_s']:>7.2f} | {r['cpu_s'] / n * 1e6:>11.1f} | {r['wall_s']:>7.1f} | {r['rss_mib']:>12.1f} |")
    if not args.quick:
        vs, vl = verify[args.rss_small]["rss_mib"], verify[args.rss_large]["rss_mib"]
        vgrowth = vl / vs - 1
        ok &= abs(vgrowth) <= 0.10
        print(
            f"\nVerification peak RSS {args.rss_large:,} vs {args.rss_small:,} items: {vgrowth * 100:+.1f} % (goal within 10 %)"
        )

    print(
        "\nNotes: dynamodump starts its 25 worker threads 1 s apart before it reads a table (also for one"
        " table): ~25 s of its wall time is that wait."
        f"\nMoto runs on the same machine ({os.cpu_count()} cores; load average {load_before:.2f} at the start,"
        f" {load_after:.2f} at the end). Total: {total:.0f} s"
    )
    print("\ngoals met" if ok else "\ngoals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
