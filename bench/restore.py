#!/usr/bin/env python3
"""Restore: `backstop restore export --via load` beside dynamodump's restore, on one local moto,
from the same 20,000-item table (the export benchmark's items, with a binary set and a binary
value inside a map on every fourth item).

Side by side in one run, on the same server and data:
- Backstop: `backstop run export` (logical) once, then `backstop restore export --table T
  --latest --to NEW --via load` (the export read and checked whole, then loaded with parallel
  BatchWriteItem, then read back and compared by fingerprint) under GNU time.
- dynamodump: `dynamodump -m backup` once, then `dynamodump -m restore -s T -d NEW` under GNU time.
Each restore runs `--runs` times (default 2), taking turns; the table printed shows the median
run by wall time. Then every restored table is scanned and compared item by item with the
source (sets compared as sets): the count of items that came back exactly equal.

Goals (issue #12): Backstop's wall time at most half of dynamodump's; every item exactly equal.

Build first: cargo build --release -p backstop-cli; dynamodump from requirements-bench.txt
(make bench-restore does both, dynamodump into target/venv-bench).
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from boto3.dynamodb.types import Binary

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export as ex  # noqa: E402  (the export benchmark's helpers: moto, GNU time, items)

TABLE = "RestoreBench"


def make_item(i):
    item = ex.make_item(i)
    if i % 4 == 0:
        r = random.Random(-i)
        item["blobs"] = {Binary(bytes([r.randrange(256) for _ in range(8)])) for _ in range(3)}
        item["attrs"]["raw"] = Binary(bytes([0, 255, i % 256, 10]))
    return item


def provision_and_load(url, items):
    ddb = ex.session().client("dynamodb", endpoint_url=url)
    for name, keys in ((ex.CATALOG, ["pk", "sk"]), (TABLE, ["id"])):
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in zip(keys, ["HASH", "RANGE"])],
        )
    ex.session().client("s3", endpoint_url=url).create_bucket(Bucket=ex.BUCKET)
    table = ex.session().resource("dynamodb", endpoint_url=url).Table(TABLE)
    with table.batch_writer() as w:
        for i in range(items):
            w.put_item(Item=make_item(i))
    ex.log(f"loaded {items:,} items into {TABLE}")


def env_for(url):
    return dict(
        ex.base_env(),
        BACKSTOP_CATALOG_TABLE=ex.CATALOG,
        BACKSTOP_EXPORT_BUCKET=ex.BUCKET,
        BACKSTOP_EXPORT_MODE="logical",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION=ex.REGION,
        AWS_DEFAULT_REGION=ex.REGION,
    )


def backstop_export(binary, url, slot):
    with tempfile.TemporaryDirectory() as tmp:
        payload = os.path.join(tmp, "payload.json")
        with open(payload, "w") as f:
            f.write(f'{{"tables": ["{TABLE}"], "slot": "{slot}"}}')
        r = ex.measure([binary, "--endpoint", url, "run", "export", "--event", payload], env_for(url), cwd=tmp)
    if r["code"] != 0:
        sys.exit(f"backstop export failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
    ex.log(f"backstop: exported {TABLE} ({r['wall_s']:.1f} s)")


def backstop_restore(binary, url, to):
    cmd = [binary, "--endpoint", url, "restore", "export", "--table", TABLE, "--latest", "--to", to,
           "--via", "load", "--no-settings"]  # fmt: skip
    r = ex.measure(cmd, env_for(url))
    if r["code"] != 0:
        sys.exit(f"backstop restore failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
    if "equal to the source's" not in r["stdout"]:
        sys.exit(f"backstop restore did not report an equal fingerprint:\n{r['stdout'][-3000:]}")
    ex.log(f"backstop: restored into {to}: {r['cpu_s']:.2f} s CPU, {r['wall_s']:.1f} s wall, {r['rss_mib']:.1f} MiB")
    return r


def dynamodump(binary, port, mode, extra, cwd):
    cmd = [binary, "-m", mode, "-r", ex.REGION, "--host", "127.0.0.1", "--port", str(port),
           "--accessKey", "x", "--secretKey", "x", *extra]  # fmt: skip
    r = ex.measure(cmd, ex.base_env(), cwd=cwd)
    if r["code"] != 0:
        sys.exit(f"dynamodump {mode} failed (exit {r['code']}):\n{r['stdout'][-3000:]}\n{r['stderr'][-3000:]}")
    return r


def normal(value):
    """A low-level attribute value with sets as sorted lists, maps and lists recursively."""
    (kind, v), = value.items()
    if kind in ("SS", "NS", "BS"):
        return (kind, tuple(sorted(v)))
    if kind == "M":
        return (kind, tuple(sorted((k, normal(x)) for k, x in v.items())))
    if kind == "L":
        return (kind, tuple(normal(x) for x in v))
    return (kind, v)


def scan(url, table):
    ddb = ex.session().client("dynamodb", endpoint_url=url)
    out = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            out[item["id"]["S"]] = tuple(sorted((k, normal(v)) for k, v in item.items()))
    return out


def exact(source, restored):
    return sum(1 for k, v in source.items() if restored.get(k) == v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--backstop", default=str(ex.ROOT / "target/release/backstop"))
    venv_dd = ex.ROOT / "target/venv-bench/bin/dynamodump"
    ap.add_argument("--dynamodump", default=str(venv_dd) if venv_dd.exists() else shutil.which("dynamodump"))
    args = ap.parse_args()
    args.backstop = str(Path(args.backstop).resolve())
    if not Path(args.backstop).exists():
        sys.exit(f"{args.backstop} is missing: cargo build --release -p backstop-cli")
    if not args.dynamodump or not Path(args.dynamodump).exists():
        sys.exit("no dynamodump: pip install -r requirements-bench.txt (make bench-restore does it)")

    proc, port, url = ex.start_moto()
    try:
        provision_and_load(url, args.items)
        backstop_export(args.backstop, url, ex.Slots().next().strftime("%Y-%m-%dT%H:%M:%SZ"))
        with tempfile.TemporaryDirectory() as dump_dir:
            dynamodump(args.dynamodump, port, "backup", ["-s", TABLE], dump_dir)
            ex.log(f"dynamodump: backed up {TABLE}")
            # moto's DescribeTable gives `"GlobalSecondaryIndexes": []` for a table without any,
            # which dynamodump saves and moto's CreateTable then refuses: drop the empty lists.
            schema_path = Path(dump_dir, "dump", TABLE, "schema.json")
            schema = json.loads(schema_path.read_text())
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if schema.get("Table", {}).get(key) == []:
                    del schema["Table"][key]
            schema_path.write_text(json.dumps(schema))
            runs = {"backstop": [], "dynamodump": []}
            for n in range(args.runs):
                to = f"{TABLE}-backstop-{n}"
                r = backstop_restore(args.backstop, url, to)
                r["table"] = to
                runs["backstop"].append(r)
                to = f"{TABLE}-dynamodump-{n}"
                r = dynamodump(args.dynamodump, port, "restore", ["-s", TABLE, "-d", to, "--noConfirm"], dump_dir)
                r["table"] = to
                ex.log(f"dynamodump: restored into {to}: {r['cpu_s']:.2f} s CPU, {r['wall_s']:.1f} s wall, {r['rss_mib']:.1f} MiB")
                runs["dynamodump"].append(r)
        source = scan(url, TABLE)
        if len(source) != args.items:
            sys.exit(f"the source table holds {len(source)} items, not {args.items}")
        rows = {}
        for name, rs in runs.items():
            for r in rs:
                got = scan(url, r["table"])
                r["exact"] = exact(source, got)
                r["count"] = len(got)
            rs.sort(key=lambda r: r["wall_s"])
            rows[name] = rs[(len(rs) - 1) // 2]
            rows[name]["spread"] = (min(r["wall_s"] for r in rs), max(r["wall_s"] for r in rs))
            rows[name]["exact_min"] = min(r["exact"] for r in rs)
    finally:
        proc.kill()

    with_bs = sum(1 for i in range(args.items) if i % 4 == 0)
    print(f"\nRestore of {args.items:,} items ({with_bs:,} with a binary set and a binary in a map), "
          f"one moto, {args.runs} runs each (median by wall time)\n")
    print("| client | wall s (min–max) | CPU s | CPU µs/item | peak RSS MiB | items in table | items exactly equal |")
    print("|---|---|---|---|---|---|---|")
    for name, label in (("backstop", "Backstop restore export --via load"), ("dynamodump", "dynamodump -m restore")):
        r = rows[name]
        print(f"| {label} | {r['wall_s']:.1f} ({r['spread'][0]:.1f}–{r['spread'][1]:.1f}) | {r['cpu_s']:.2f} | "
              f"{r['cpu_s'] / args.items * 1e6:.1f} | {r['rss_mib']:.1f} | {r['count']:,} | {r['exact_min']:,} |")
    phases = [l.strip() for l in rows["backstop"]["stdout"].splitlines() if "read the table back in" in l]
    if phases:
        print(f"\nBackstop's median run: {phases[0].removeprefix('note: ')}")
    ratio = rows["backstop"]["wall_s"] / rows["dynamodump"]["wall_s"]
    print(f"\nBackstop/dynamodump wall time: {ratio:.3f} (goal <= 0.5)")
    print(f"Backstop items exactly equal: {rows['backstop']['exact_min']:,} of {args.items:,} (goal: all)")
    print(f"dynamodump items exactly equal: {rows['dynamodump']['exact_min']:,} of {args.items:,}")
    met = ratio <= 0.5 and rows["backstop"]["exact_min"] == args.items
    print("goals met" if met else "GOALS NOT MET")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
