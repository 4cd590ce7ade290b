#!/usr/bin/env python3
"""The Python side of the cold-start benchmark: a boto3 function doing the snapshot dry run's work.

It is its own minimal runtime (as a `provided` runtime bootstrap would be): clients are built at
init, then it asks the Runtime API for events and answers each with a JSON report. The work
matches the Rust dry run for one table: catalog GetItem, DescribeTable, DescribeContinuousBackups.
"""

import json
import os
import time
import urllib.request

import boto3

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime"
CATALOG = os.environ["BACKSTOP_CATALOG_TABLE"]

# Built once per process, as the Rust function does.
dynamodb = boto3.client("dynamodb")
sns = boto3.client("sns")
cloudwatch = boto3.client("cloudwatch")


def handler(event):
    started = time.time()
    slot = event["slot"]
    targets = []
    for table in event["tables"]:
        done = dynamodb.get_item(
            TableName=CATALOG,
            Key={"pk": {"S": f"TARGET#snapshot#{table}"}, "sk": {"S": f"SLOT#{slot}"}},
            ConsistentRead=True,
        ).get("Item")
        if done:
            targets.append({"table": table, "outcome": {"status": "already_done"}})
            continue
        dynamodb.describe_table(TableName=table)
        pitr = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        state = pitr.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        targets.append(
            {
                "table": table,
                "outcome": {"status": "planned", "backup_name": f"{table}-backstop-{slot}"},
                "pitr": {"state": "enabled" if state == "ENABLED" else "disabled"},
            }
        )
    return {"job": "snapshot", "slot": slot, "dry_run": True, "targets": targets, "duration_ms": int((time.time() - started) * 1000)}


def main():
    while True:
        with urllib.request.urlopen(f"{API}/invocation/next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        body = json.dumps(handler(event)).encode()
        req = urllib.request.Request(f"{API}/invocation/{request_id}/response", data=body, method="POST")
        urllib.request.urlopen(req).read()


if __name__ == "__main__":
    main()
