"""Least privilege, enforced: each function's job runs against moto with IAM enforced, as that
function's role, and does its whole work; each role is refused what it must never do.

The stack is the SAM-translated template deployed to moto's CloudFormation, so the roles carry
the policies CloudFormation made from the template (moto stores them as Python literals and
leaves a None where Fn::If gave AWS::NoValue: they are put back as the JSON CloudFormation would
have stored). Each job runs through the `backstop` CLI (`backstop run JOB`, the code each
Lambda handler runs) with the function's own environment, read from moto's Lambda, and the
temporary credentials of its role (sts:AssumeRole). moto checks every request's signature;
moto_iam.py decides each one with iam-simulate, on the resource ARN and context keys the
request carries, and logs every decision. From that log each test lists the actions the job
used, and fails on a permission the template grants that no code path uses. Besides the jobs,
each role makes single requests of its own (a second session, `<job>-probe`, so that they never
count as a job's use): what it may write in the catalog and what it may restore.
"""

import ast
import base64
import gzip
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from test_template import NOT_IN_MOTO, Stack, as_list, translated

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "iam-orders"
SOURCE_BUCKET = "iam-uploads"
DB = "iam-ledger"
CLUSTER = "iam-books"
GROUP = "iam-sessions"
DB_REPLICA = "us-west-2"
PARAMETERS = {
    "TableNames": TABLE,
    "RdsInstances": DB,
    "AuroraClusters": CLUSTER,
    "ElastiCacheGroups": GROUP,
    "DbReplicaRegion": DB_REPLICA,
    "EnablePitr": "true",
    "BucketNames": SOURCE_BUCKET,
    "AlarmEmail": "ops@example.com",
    # Short, so that four backups are enough for retention to delete one (the floor keeps the
    # newest three whatever the policy).
    "RetentionPolicy": "keep_daily=1",
    # The operator who sets and lifts legal holds (a user made below).
    "CatalogWriterArns": f"arn:aws:iam::{ACCOUNT}:user/legal-ops",
}
FUNCTIONS = {
    "snapshot": "SnapshotFunction",
    "export": "ExportFunction",
    "validate": "ValidateFunction",
    "retention": "RetentionFunction",
    "restore": "RestoreFunction",
    "bucket": "BucketFunction",
    "summary": "SummaryFunction",
}
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


FAKETIME_LIBS = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
]


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def cli_binary():
    subprocess.run(["cargo", "build", "-q", "-p", "backstop-cli", "--bin", "backstop"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "backstop"


def clean(node):
    """A policy document as CloudFormation stores it: AWS::NoValue elements dropped."""
    if isinstance(node, list):
        return [clean(x) for x in node if x is not None]
    if isinstance(node, dict):
        return {k: clean(v) for k, v in node.items() if v is not None}
    return node


class World:
    def __init__(self, url, log, admin, clock):
        self.clock = clock
        self.url = url
        self.log = log
        self.admin = admin
        self.roles = {}
        self.envs = {}
        self.policies = {}
        self.outputs = {}
        self.operator = None

    def set_clock(self, at=None):
        """moto's clock (libfaketime): `at`, or the real time again."""
        at = at or datetime.now(timezone.utc)
        Path(self.clock).write_text(at.strftime("@%Y-%m-%d %H:%M:%S") + "\n")

    def client(self, name, creds=None, region=REGION):
        creds = creds or self.admin
        return boto3.client(name, endpoint_url=self.url, region_name=region, **creds)

    def decisions(self, role, probes=True):
        """The decisions logged for one role's sessions (without its probe session's, unless
        `probes`)."""
        marker = f":assumed-role/{self.roles[role]['name']}/"
        out = []
        for line in Path(self.log).read_text().splitlines():
            d = json.loads(line)
            principal = d.get("principal", "")
            if marker in principal and (probes or not principal.endswith(f"/{role}-probe")):
                out.append(d)
        return out

    def run(self, job, payload, extra_env=None, time_left=None, drop_env=()):
        """`backstop run JOB` as the function's role, with the function's environment."""
        creds = self.roles[job]["creds"]
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": creds["aws_session_token"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_COLOR": "1",
            **{k: v for k, v in self.envs[job].items() if k not in drop_env},
            **(extra_env or {}),
        }
        return subprocess.run(
            [str(CLI), "run", job, "--event", "-", "--json"] + (["--time-left", str(time_left)] if time_left else []),
            input=json.dumps(payload),
            env=env,
            capture_output=True,
            text=True,
            timeout=int(os.environ.get('BACKSTOP_IAM_JOB_TIMEOUT', '300')),
        )


CLI = None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    global CLI
    CLI = cli_binary()
    tmp = tmp_path_factory.mktemp("iam")
    log = tmp / "iam-decisions.jsonl"
    resource_policies = tmp / "resource-policies.json"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # moto runs under libfaketime (as in the Rust retention test), so that the retention test
    # can make backups that AWS would say are weeks old.
    lib = next((p for p in FAKETIME_LIBS if Path(p).exists()), None)
    assert lib, "libfaketime is not installed: apt-get install faketime (make deps does)"
    clock = tmp / "clock"
    clock.write_text(datetime.now(timezone.utc).strftime("@%Y-%m-%d %H:%M:%S") + "\n")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "moto_iam.py"), str(port)],
        env={
            **os.environ,
            "BACKSTOP_IAM_LOG": str(log),
            "BACKSTOP_IAM_RESOURCE_POLICIES": str(resource_policies),
            "LD_PRELOAD": lib,
            "FAKETIME_TIMESTAMP_FILE": str(clock),
            "FAKETIME_NO_CACHE": "1",
        },
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "moto.log", "w"),
    )
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto did not start (pip install -r requirements-dev.txt)")
            time.sleep(0.1)
    try:
        boot = {"aws_access_key_id": "backstop-local", "aws_secret_access_key": "backstop-local"}
        iam = boto3.client("iam", endpoint_url=url, region_name=REGION, **boot)
        iam.create_user(UserName="test-admin")
        iam.put_user_policy(UserName="test-admin", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="test-admin")["AccessKey"]
        w = World(url, str(log), {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}, str(clock))
        deploy(w)
        # The operator of legal holds, named in CatalogWriterArns: an identity policy that
        # lets it read and update the catalog's items.
        catalog_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{w.outputs['CatalogTableName']}"
        iam.create_user(UserName="legal-ops")
        iam.put_user_policy(UserName="legal-ops", PolicyName="holds", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"], "Resource": catalog_arn}],
        }))
        key = iam.create_access_key(UserName="legal-ops")["AccessKey"]
        w.operator = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        # The catalog's resource policy (moto's CloudFormation drops it): only the function
        # roles may write the catalog, whatever identity policies allow.
        policy = Stack(PARAMETERS).props("CatalogTable")["ResourcePolicy"]["PolicyDocument"]
        text = json.dumps(policy)
        for job, logical in FUNCTIONS.items():
            text = text.replace(f"<{logical}Role.Arn>", w.roles[job]["arn"])
        assert "<" not in text, text
        resource_policies.write_text(json.dumps({catalog_arn: json.loads(text)}))
        seed(w)
        # BackupProtectionPolicy attached as the README says: to every other principal (the
        # test's administrator) and, harmlessly, to the function roles, retention's included.
        protection = w.outputs["BackupProtectionPolicyArn"]
        iam.attach_user_policy(UserName="test-admin", PolicyArn=protection)
        for role in w.roles.values():
            iam.attach_role_policy(RoleName=role["name"], PolicyArn=protection)
        sts = w.client("sts")
        for job, logical in FUNCTIONS.items():
            role = w.roles[job]
            assumed = sts.assume_role(RoleArn=role["arn"], RoleSessionName=f"{job}-test")["Credentials"]
            role["creds"] = {
                "aws_access_key_id": assumed["AccessKeyId"],
                "aws_secret_access_key": assumed["SecretAccessKey"],
                "aws_session_token": assumed["SessionToken"],
            }
            probe = sts.assume_role(RoleArn=role["arn"], RoleSessionName=f"{job}-probe")["Credentials"]
            role["probe"] = {
                "aws_access_key_id": probe["AccessKeyId"],
                "aws_secret_access_key": probe["SecretAccessKey"],
                "aws_session_token": probe["SessionToken"],
            }
        # From here on every request is authenticated and authorised.
        req = urllib.request.Request(url + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=10)
        yield w
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def deploy(w):
    s3 = w.client("s3")
    s3.create_bucket(Bucket="backstop-artifacts")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    uris = {}
    for job, logical in FUNCTIONS.items():
        s3.put_object(Bucket="backstop-artifacts", Key=f"{job}.zip", Body=buf.getvalue())
        uris[logical] = f"s3://backstop-artifacts/{job}.zip"
    out = translated(uris, PARAMETERS)
    out["Resources"] = {k: v for k, v in out["Resources"].items() if v["Type"] not in NOT_IN_MOTO}
    cfn = w.client("cloudformation")
    cfn.create_stack(
        StackName="backstop",
        TemplateBody=json.dumps(out),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName="backstop")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    w.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # (moto lists a resource its condition left out, RestoreSourcesByTag here, without ids)
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="backstop")["StackResources"]
        if "LogicalResourceId" in r
    }
    iam = w.client("iam")
    lam = w.client("lambda")
    # moto's CloudFormation resolves !GetAtt Key.Arn in the role policies to a key id of its
    # own, not the stack key's (the bucket's encryption and the topic get the real one; the
    # account holds one key). AWS resolves all to the one key: so do the policies here.
    (key_id,) = [a["TargetKeyId"] for a in w.client("kms").list_aliases()["Aliases"] if a["AliasName"] == "alias/backstop-backstop"]
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    for job, logical in FUNCTIONS.items():
        name = physical[logical + "Role"]
        policies = []
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            if isinstance(document, str):
                document = ast.literal_eval(document)
            document = json.loads(re.sub(r"arn:aws:kms:[^:]+:\d+:key/[0-9a-f-]{36}", key_arn, json.dumps(clean(document))))
            # (SAM's on-failure destination policy has no Version, which IAM takes as 2008-10-17
            # and moto refuses; that policy uses no policy variables, so both read it alike.)
            document.setdefault("Version", "2012-10-17")
            iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(document))
            policies.append(document)
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        w.roles[job] = {"name": name, "arn": arn}
        w.policies[job] = policies
        conf = lam.get_function_configuration(FunctionName=physical[logical])
        w.envs[job] = {k: str(v) for k, v in conf.get("Environment", {}).get("Variables", {}).items()}


def seed(w):
    ddb = w.client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        Tags=[{"Key": "backup", "Value": "daily"}],
    )
    for i in range(20):
        ddb.put_item(TableName=TABLE, Item={"id": {"S": f"order-{i:03}"}, "n": {"N": str(i)}, "b": {"B": bytes([i])}})
    rds = w.client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier=DB, Engine="postgres", EngineVersion="16.3", DBInstanceClass="db.t3.micro",
        AllocatedStorage=20, MasterUsername="backstop", MasterUserPassword="not-a-real-secret-1",
        BackupRetentionPeriod=7, DeletionProtection=True,
    )
    rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER, Engine="aurora-postgresql", EngineVersion="16.4",
        MasterUsername="backstop", MasterUserPassword="not-a-real-secret-1", BackupRetentionPeriod=7,
    )
    # Someone's own manual snapshot, and one that only looks like Backstop's (not tagged).
    rds.create_db_snapshot(DBInstanceIdentifier=DB, DBSnapshotIdentifier=f"{DB}-manual-20261101")
    rds.create_db_snapshot(DBInstanceIdentifier=DB, DBSnapshotIdentifier=f"{DB}-backstop-lookalike")
    ec = w.client("elasticache")
    ec.create_replication_group(
        ReplicationGroupId=GROUP, ReplicationGroupDescription="sessions", Engine="redis", EngineVersion="7.1",
        CacheNodeType="cache.t4g.small", NumCacheClusters=2, ReplicasPerNodeGroup=1, SnapshotRetentionLimit=7,
    )
    ec.create_snapshot(ReplicationGroupId=GROUP, SnapshotName=f"{GROUP}-manual-20261101")
    s3 = w.client("s3")
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    s3.put_bucket_versioning(Bucket=SOURCE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for i in range(5):
        s3.put_object(Bucket=SOURCE_BUCKET, Key=f"docs/{i}.txt", Body=f"document {i}".encode(), Tagging="class=public" if i == 0 else "")


# The hour 20 hours before the tests began: slots count from it, once for the whole run (a slot
# named twice is the same slot, even across an hour's turn).
SLOTS_FROM = (datetime.now(timezone.utc) - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)


def slot(hours):
    """The slot `hours` (0 to 7) after SLOTS_FROM: always past, whatever the time of day
    (Backstop refuses a slot in the future), and within the backfill window (by default 26 h:
    an export or a bucket backup refuses an older slot that nothing of exists yet), in order
    (neither starts a slot older than one it completed)."""
    assert 0 <= hours <= 7
    return (SLOTS_FROM + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(proc, ok=(0,)):
    assert proc.returncode in ok, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def denied(w, job):
    return [d for d in w.decisions(job) if d.get("result") != "Allowed"]


def refused(w, job, call, *args, explicitly=False, **kwargs):
    """The call, made as the job's role, is refused by IAM: moto answers 403 AccessDenied (in
    XML, whatever the service's protocol, which boto3 then cannot name), and the decision log
    shows the refusal for that role."""
    before = len(w.decisions(job))
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    meta = e.value.response.get("ResponseMetadata", {})
    assert meta.get("HTTPStatusCode") == 403 and "AccessDenied" in str(e.value.response), e.value.response
    after = w.decisions(job)[before:]
    assert after and after[-1]["result"] in (("ExplicitlyDenied",) if explicitly else ("ImplicitlyDenied", "ExplicitlyDenied")), after


def as_role(w, job, service):
    return w.client(service, w.roles[job]["creds"])


def old_days():
    """Three days, weeks back: with the backup of yesterday's slot, four backups on four days. The policy
    (keep_daily=1) and the floor (the newest three) keep all but the first."""
    day = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    return [day - timedelta(days=n) for n in (40, 39, 38)]


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_snapshot_backs_up_as_its_role_and_may_not_delete_or_read_items(world):
    w = world
    JOB = "snapshot"
    # Backups that AWS dates weeks back (moto's clock moved), then yesterday's slot.
    for day in old_days():
        w.set_clock(day + timedelta(seconds=5))
        rep = report(w.run("snapshot", {"slot": stamp(day), "tables": [TABLE]}))
        assert rep["status"] == "succeeded" and not rep.get("errors"), rep
    w.set_clock()
    # (moto fixes PITR's latest restorable time when PITR is turned on, which the first run
    # did weeks back on moto's clock; turned on again now, it reads as AWS's would.)
    admin = w.client("dynamodb")
    for on in (False, True):
        admin.update_continuous_backups(TableName=TABLE, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": on})
    rep = report(w.run("snapshot", {"slot": slot(2), "tables": [TABLE]}))
    assert rep["status"] == "succeeded", rep
    assert not rep.get("errors"), rep
    # EventBridge delivers the same slot again: nothing new.
    again = report(w.run("snapshot", {"slot": slot(2), "tables": [TABLE]}))
    assert again["totals"]["already_done"] == 1 and again["totals"]["created"] == 0, again["totals"]
    assert not denied(w, "snapshot"), denied(w, "snapshot")
    backups = w.client("dynamodb").list_backups(TableName=TABLE)["BackupSummaries"]
    assert len(backups) == 4, backups
    ddb = as_role(w, "snapshot", "dynamodb")
    refused(w, JOB, ddb.delete_backup, BackupArn=backups[0]["BackupArn"], explicitly=True)
    refused(w, JOB, ddb.delete_table, TableName=TABLE)
    refused(w, JOB, ddb.scan, TableName=TABLE)
    refused(w, JOB, ddb.delete_item, TableName=w.envs["snapshot"]["BACKSTOP_CATALOG_TABLE"], Key={"pk": {"S": "x"}, "sk": {"S": "y"}})


def test_export_writes_only_under_its_prefix_and_deletes_nothing(world):
    w = world
    JOB = "export"
    rep = report(w.run("export", {"slot": slot(3), "tables": [TABLE], "mode": "logical"}))
    assert rep["status"] == "succeeded", rep
    assert not denied(w, "export"), denied(w, "export")
    bucket = w.envs["export"]["BACKSTOP_EXPORT_BUCKET"]
    prefix = w.envs["export"]["BACKSTOP_EXPORT_PREFIX"]
    keys = [o["Key"] for o in w.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(k.startswith(f"{prefix}/{TABLE}/") and k.endswith("backstop-manifest.json") for k in keys), keys
    # A native export (PITR is on): ExportTableToPointInTime, with the S3 writes AWS checks
    # as this role at the destination; the next run follows it (DescribeExport). moto writes no
    # manifests, so it stays in progress here.
    # (a later slot than the logical export's: an older one would be a backfill, refused)
    native = {"slot": slot(5), "tables": [TABLE], "mode": "native"}
    rep = report(w.run("export", native))
    assert rep["targets"][0]["outcome"]["status"] == "started", rep["targets"]
    report(w.run("export", native))
    assert [d for d in w.decisions("export") if d["action"] == "dynamodb:DescribeExport" and d["result"] == "Allowed"]
    # AWS's manifests placed (as in the validate test): the next run finalizes it as this role,
    # reading them back.
    root = f"{prefix}/{TABLE}/{slot(5).replace('-', '').replace(':', '')}"
    ddb = w.client("dynamodb")
    table_arn = ddb.describe_table(TableName=TABLE)["Table"]["TableArn"]
    arns = [e["ExportArn"] for e in ddb.list_exports(TableArn=table_arn)["ExportSummaries"]]
    (arn,) = [a for a in arns if ddb.describe_export(ExportArn=a)["ExportDescription"].get("S3Prefix") == root]
    assert place_native_manifests(w, bucket, root, arn, TABLE) == 20
    rep = report(w.run("export", native))
    assert rep["targets"][0]["outcome"]["status"] in ("created", "done", "exported"), rep["targets"][0]
    assert not denied(w, "export"), denied(w, "export")
    s3 = as_role(w, "export", "s3")
    refused(w, JOB, s3.put_object, Bucket=bucket, Key="elsewhere/x.json", Body=b"{}")
    refused(w, JOB, s3.delete_object, Bucket=bucket, Key=keys[0])
    refused(w, "export", as_role(w, "export", "dynamodb").delete_table, TableName=TABLE)


def place_native_manifests(w, bucket, root, arn, table):
    """The manifests AWS writes beside a native export's data (moto writes only the data file),
    in the documented format (as tests/src/lib.rs does for the Rust tests)."""
    s3 = w.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{root}/AWSDynamoDB/").get("Contents", [])]
    data_key = next(k for k in keys if "/data/" in k)
    body = s3.get_object(Bucket=bucket, Key=data_key)["Body"].read()
    count = sum(1 for line in gzip.decompress(body).decode().splitlines() if line.strip())
    etag = s3.head_object(Bucket=bucket, Key=data_key)["ETag"].strip('"')
    folder = data_key.split("/data/")[0]
    files = {"itemCount": count, "md5Checksum": base64.b64encode(hashlib.md5(body).digest()).decode(), "etag": etag, "dataFileS3Key": data_key}
    summary = {
        "version": "2020-06-30", "exportArn": arn,
        "startTime": "2026-11-10T03:00:01.000Z", "endTime": "2026-11-10T03:05:00.000Z",
        "tableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}",
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "exportTime": "2026-11-10T03:00:00.000Z", "s3Bucket": bucket, "s3Prefix": root,
        "s3SseAlgorithm": "KMS", "s3SseKmsKeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/test",
        "manifestFilesS3Key": f"{folder}/manifest-files.json",
        "billedSizeBytes": len(body), "itemCount": count,
        "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT",
    }
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-files.json", Body=(json.dumps(files) + "\n").encode())
    s3.put_object(Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary).encode())
    return count


def test_validate_verifies_and_drills_as_its_role(world):
    w = world
    JOB = "validate"
    # The drill restores the newest backup and exports the backup's moment beside it (its
    # witness). moto finishes the export at once but writes no manifests: the first invocation
    # (100 s left, so it stops 90 s before its deadline) leaves the drill waiting; AWS's
    # manifests are placed; the next invocation verifies the drill and deletes its table.
    first = report(w.run("validate", {"slot": slot(6), "tables": [TABLE]}, time_left=100))
    bucket = w.envs["validate"]["BACKSTOP_EXPORT_BUCKET"]
    prefix = w.envs["validate"]["BACKSTOP_EXPORT_PREFIX"]
    witness = [
        o["Key"]
        for o in w.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/~drills/{TABLE}/").get("Contents", [])
        if "/data/" in o["Key"]
    ]
    assert len(witness) == 1, (first, witness)
    root = witness[0].split("/AWSDynamoDB/")[0]
    ddb = w.client("dynamodb")
    table_arn = ddb.describe_table(TableName=TABLE)["Table"]["TableArn"]
    arns = [e["ExportArn"] for e in ddb.list_exports(TableArn=table_arn)["ExportSummaries"]]
    (arn,) = [a for a in arns if ddb.describe_export(ExportArn=a)["ExportDescription"].get("S3Prefix") == root]
    assert place_native_manifests(w, bucket, root, arn, TABLE) == 20
    rep = report(w.run("validate", {"slot": slot(6), "tables": [TABLE]}, time_left=100))
    assert not denied(w, "validate"), denied(w, "validate")
    assert rep["status"] == "succeeded", rep
    # The first invocation verified the export job's two exports, logical and native (read
    # back whole as this role).
    assert first["totals"]["exports_verified"] == 2, first["totals"]
    assert rep["totals"]["drills_finished"] == 1 and rep["totals"]["drills_failed"] == 0, rep["totals"]
    tables = w.client("dynamodb").list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith("backstop-drill-")], tables
    # The drill tagged its table with the drill's two tags (and nothing else), as this role.
    tagged = [d for d in w.decisions("validate", probes=False) if d["action"] == "dynamodb:TagResource"]
    assert tagged and all(d["result"] == "Allowed" and d["resource"].split("table/")[1].startswith("backstop-drill-") for d in tagged), tagged
    assert all(d["context"]["aws:TagKeys"] == ["backstop:drill", "backstop:drill-of"] for d in tagged), tagged
    ddb = as_role(w, "validate", "dynamodb")
    refused(w, JOB, ddb.delete_table, TableName=TABLE)
    refused(w, JOB, ddb.put_item, TableName=TABLE, Item={"id": {"S": "forged"}})
    refused(w, JOB, as_role(w, "validate", "s3").put_object, Bucket=bucket, Key=f"{prefix}/{TABLE}/forged.json", Body=b"{}")


def test_retention_deletes_backups_only(world):
    w = world
    JOB = "retention"
    rep = report(w.run("retention", {"tables": [TABLE]}))
    assert not denied(w, "retention"), denied(w, "retention")
    assert rep["status"] == "succeeded", rep
    # The oldest backup is gone; the newest three are kept.
    assert rep["totals"]["deleted"] == 1 and rep["totals"]["kept"] == 3, json.dumps(rep["targets"], indent=1)
    left = w.client("dynamodb").list_backups(TableName=TABLE)["BackupSummaries"]
    first = old_days()[0]
    assert len(left) == 3 and all(b["BackupCreationDateTime"].date() != first.date() for b in left), left
    ddb = as_role(w, "retention", "dynamodb")
    refused(w, JOB, ddb.delete_table, TableName=TABLE)
    refused(w, JOB, ddb.scan, TableName=TABLE)
    refused(w, JOB, ddb.get_item, TableName=TABLE, Key={"id": {"S": "order-001"}})
    bucket = w.envs["retention"]["BACKSTOP_EXPORT_BUCKET"]
    keys = [o["Key"] for o in w.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    refused(w, "retention", as_role(w, "retention", "s3").get_object, Bucket=bucket, Key=keys[0])


def test_restore_creates_only_prefixed_tables(world):
    w = world
    JOB = "restore"
    payload = {"restore": {"kind": "backup", "table": TABLE, "slot": slot(2), "to": "restored-iam-orders"}}
    for _ in range(30):
        rep = report(w.run("restore", payload))
        if rep.get("state") in ("DONE", "FAILED"):
            break
    assert rep.get("state") == "DONE", rep
    assert not denied(w, "restore"), denied(w, "restore")
    items = w.client("dynamodb").scan(TableName="restored-iam-orders")["Items"]
    assert len(items) == 20
    # From the newest export (read back from S3 and loaded), and to a point in time.
    for payload, name in (
        ({"restore": {"kind": "export", "table": TABLE, "latest": True, "to": "restored-iam-orders-export"}}, "restored-iam-orders-export"),
        ({"restore": {"kind": "pitr", "table": TABLE, "latest": True, "to": "restored-iam-orders-pitr"}}, "restored-iam-orders-pitr"),
    ):
        for _ in range(30):
            rep = report(w.run("restore", payload))
            if rep.get("state") in ("DONE", "FAILED"):
                break
        assert rep.get("state") == "DONE", rep
        assert len(w.client("dynamodb").scan(TableName=name)["Items"]) == 20, name
    assert not denied(w, "restore"), denied(w, "restore")
    ddb = as_role(w, "restore", "dynamodb")
    backup = w.client("dynamodb").list_backups(TableName=TABLE)["BackupSummaries"][0]["BackupArn"]
    refused(w, JOB, ddb.restore_table_from_backup, TargetTableName="iam-orders-copy", BackupArn=backup)
    refused(w, JOB, ddb.delete_table, TableName=TABLE)
    refused(w, JOB, ddb.delete_backup, BackupArn=backup, explicitly=True)


def test_bucket_backs_up_and_writes_only_the_backup_store(world):
    w = world
    JOB = "bucket"
    rep = report(w.run("bucket", {"slot": slot(4), "buckets": [SOURCE_BUCKET]}))
    assert not denied(w, "bucket"), denied(w, "bucket")
    assert rep["status"] == "succeeded", rep
    store = w.envs["bucket"]["BACKSTOP_BUCKET_BACKUP_BUCKET"]
    keys = [o["Key"] for o in w.client("s3").list_objects_v2(Bucket=store).get("Contents", [])]
    assert len([k for k in keys if k.startswith(f"buckets/{SOURCE_BUCKET}/objects/")]) == 5, keys
    assert f"buckets/{SOURCE_BUCKET}/slots/{slot(4).replace('-', '').replace(':', '')}/manifest.json" in keys, keys
    s3 = as_role(w, "bucket", "s3")
    refused(w, JOB, s3.put_object, Bucket=SOURCE_BUCKET, Key="docs/forged.txt", Body=b"x")
    refused(w, JOB, s3.delete_object, Bucket=SOURCE_BUCKET, Key="docs/0.txt")


def test_summary_publishes_once_and_writes_only_its_markers(world):
    w = world
    JOB = "summary"
    rep = report(w.run("summary", {"summary": "daily", "slot": slot(7)}))
    assert rep["published"], rep
    # Delivered again: the marker says it was sent, nothing is published twice.
    again = report(w.run("summary", {"summary": "daily", "slot": slot(7)}))
    assert not again["published"], again
    assert not denied(w, "summary"), denied(w, "summary")
    catalog = w.envs["summary"]["BACKSTOP_CATALOG_TABLE"]
    ddb = as_role(w, "summary", "dynamodb")
    refused(w, JOB, ddb.put_item, TableName=catalog, Item={"pk": {"S": "TARGET#snapshot#x"}, "sk": {"S": "y"}})
    refused(w, JOB, ddb.delete_table, TableName=TABLE)

def as_probe(w, job, service):
    """A client with the role's probe session: its requests never count as the job's."""
    return w.client(service, w.roles[job]["probe"])


def decision(w, job, call, **kwargs):
    """Makes one request as the job's role and returns IAM's decision on it: "Allowed", or the
    refusal ("ImplicitlyDenied", "ExplicitlyDenied"; moto then answers 403 AccessDenied). A
    request IAM allows may still fail in moto (the catalog probes below are conditional writes
    of items that do not exist: they never change the catalog, allowed or not)."""
    with open(w.log) as f:
        f.seek(0, os.SEEK_END)
        start = f.tell()
    error = None
    try:
        call(**kwargs)
    except ClientError as e:
        error = e.response
    with open(w.log) as f:
        f.seek(start)
        marker = f":assumed-role/{w.roles[job]['name']}/"
        mine = [d for d in map(json.loads, f.read().splitlines()) if marker in d.get("principal", "")]
    assert mine, (job, kwargs)
    refusals = [d for d in mine if d.get("result") != "Allowed"]
    if refusals:
        assert error and error["ResponseMetadata"]["HTTPStatusCode"] == 403, (error, refusals)
        return refusals[-1]["result"]
    assert not error or error["Error"]["Code"] != "AccessDenied", error
    return "Allowed"


# The catalog keys each role writes, by action, as the code writes them (partition key
# prefixes: shared/src/catalog.rs, bucket/record.rs, bucket/lock.rs, export/checkpoint.rs,
# drill.rs, restore/request.rs, summary.rs). A backup's, an export's or a bucket slot's record
# (TARGET#<job>#<target>) is updated, never put: a put replaces the whole item and would drop
# its legal hold.
CATALOG_KEYS = {
    "snapshot": {"UpdateItem": ["TARGET#snapshot#"], "PutItem": ["RUN#snapshot"]},
    # Checks the backups' and exports' holds and marks them DELETED.
    "retention": {"UpdateItem": ["TARGET#snapshot#", "TARGET#export#"], "PutItem": ["RUN#retention"]},
    "export": {"UpdateItem": ["TARGET#export#", "EXPORT#"], "PutItem": ["EXPORT#", "RUN#export"]},
    # An export's verification, a native export it finalizes; its drills.
    "validate": {"UpdateItem": ["TARGET#export#"], "PutItem": ["DRILL#", "RUN#validate"]},
    "restore": {"PutItem": ["RESTORE#"], "UpdateItem": ["RESTORE#"], "DeleteItem": ["RESTORE#"]},
    "bucket": {"PutItem": ["BUCKET#", "RUN#bucket"], "UpdateItem": ["BUCKET#", "TARGET#bucket#"], "DeleteItem": ["BUCKET#"]},
    "summary": {"PutItem": ["SUMMARY#"], "UpdateItem": ["SUMMARY#"], "DeleteItem": ["SUMMARY#"]},
}
# A partition key of each kind the catalog holds (and two nobody writes).
CATALOG_PKS = [
    f"TARGET#snapshot#{TABLE}",
    f"TARGET#snapshot#rds:{DB}",
    f"TARGET#export#{TABLE}",
    f"TARGET#bucket#{SOURCE_BUCKET}",
    f"TARGET#validate#{TABLE}",
    f"TARGET#retention#{TABLE}",
    f"EXPORT#{TABLE}#2026-12-01T03:00:00Z",
    "RUN#snapshot",
    "RUN#retention",
    "RUN#export",
    "RUN#validate",
    "RUN#bucket",
    f"DRILL#{TABLE}",
    f"RESTORE#restored-{TABLE}",
    f"BUCKET#{SOURCE_BUCKET}",
    "SUMMARY#daily",
    "SUMMARY#monthly",
    f"HOLD#{TABLE}",
    "RUN#restore",
]
# A sort key no item has: every probe is conditional on the item existing.
NO_SUCH_SK = "iam-probe#never-written"


def owns(job, action, pk):
    return any(pk == p or (p.endswith("#") and pk.startswith(p)) for p in CATALOG_KEYS[job].get(action, []))


def catalog_write(ddb, catalog, action, pk, sk=NO_SUCH_SK, **extra):
    """(call, kwargs) of one conditional write of (pk, sk) that never changes the catalog."""
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    only_if = {"ConditionExpression": "attribute_exists(pk)"}
    if action == "PutItem":
        return ddb.put_item, {"TableName": catalog, "Item": {**key, "probe": {"S": "x"}, **extra.get("item", {})}, **only_if}
    if action == "UpdateItem":
        kwargs = {"TableName": catalog, "Key": key, **only_if}
        kwargs.update(extra.get("update", {"UpdateExpression": "SET probe = :v", "ExpressionAttributeValues": {":v": {"S": "x"}}}))
        return ddb.update_item, kwargs
    return ddb.delete_item, {"TableName": catalog, "Key": key, **only_if}


def test_each_role_writes_only_its_own_catalog_keys(world):
    """Issue 35, point 8: each role may put, update or delete only the catalog items whose
    partition key it owns (dynamodb:LeadingKeys); every other key, every other role's
    included, is refused by IAM. The jobs above did their whole work with these rights."""
    w = world
    catalog = w.envs["snapshot"]["BACKSTOP_CATALOG_TABLE"]
    wrong = []
    for job in FUNCTIONS:
        ddb = as_probe(w, job, "dynamodb")
        for action in ("PutItem", "UpdateItem", "DeleteItem"):
            for pk in CATALOG_PKS:
                call, kwargs = catalog_write(ddb, catalog, action, pk)
                got = decision(w, job, call, **kwargs)
                expected = "Allowed" if owns(job, action, pk) else "ImplicitlyDenied"
                if got != expected:
                    wrong.append(f"{job} {action} {pk}: {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)
    # Nobody may batch-write the catalog.
    for job in FUNCTIONS:
        ddb = as_probe(w, job, "dynamodb")
        refused(w, job, ddb.batch_write_item, RequestItems={catalog: [{"DeleteRequest": {"Key": {"pk": {"S": f"RUN#{job}"}, "sk": {"S": NO_SUCH_SK}}}}]})


def test_only_retention_and_the_operator_change_a_legal_hold(world):
    """Issue 35, point 8: a write that names legal_hold (sets, removes or tests it) is refused
    to every role but retention's, which tests holds before a delete (the bucket function's
    prune reads a slot's hold and never names it in a write); the operator in CatalogWriterArns
    sets and lifts holds; the account's administrator, not listed there, may not."""
    w = world
    catalog = w.envs["snapshot"]["BACKSTOP_CATALOG_TABLE"]
    variants = {
        "SET": {"UpdateExpression": "SET legal_hold = :v", "ExpressionAttributeValues": {":v": {"BOOL": False}}},
        "SET #h": {"UpdateExpression": "SET #h = :v", "ExpressionAttributeNames": {"#h": "legal_hold"}, "ExpressionAttributeValues": {":v": {"S": "no"}}},
        "REMOVE": {"UpdateExpression": "REMOVE legal_hold"},
        # The legacy form (with the legacy condition: the item must exist).
        "AttributeUpdates": {"AttributeUpdates": {"legal_hold": {"Action": "DELETE"}}},
    }
    for job in FUNCTIONS:
        ddb = as_probe(w, job, "dynamodb")
        for prefix in CATALOG_KEYS[job].get("UpdateItem", []):
            pk = prefix + TABLE if prefix.endswith("#") else prefix
            for name, update in variants.items():
                call, kwargs = catalog_write(ddb, catalog, "UpdateItem", pk, update=update)
                if "AttributeUpdates" in kwargs:
                    del kwargs["ConditionExpression"]
                    kwargs["Expected"] = {"pk": {"Exists": True, "Value": {"S": pk}}}
                got = decision(w, job, call, **kwargs)
                if job == "retention":
                    expected = "Allowed"
                else:
                    expected = "ExplicitlyDenied"
                assert got == expected, (job, pk, name, got)
        # A new item that carries a hold, where the role may put: refused as well.
        for prefix in CATALOG_KEYS[job].get("PutItem", []):
            if job == "retention":
                continue
            pk = prefix + TABLE if prefix.endswith("#") else prefix
            call, kwargs = catalog_write(ddb, catalog, "PutItem", pk, item={"legal_hold": {"BOOL": True}})
            assert decision(w, job, call, **kwargs) == "ExplicitlyDenied", (job, pk)

    # A real hold, set by the operator on the newest backup's record; no role but retention may
    # lift it, by an update or by putting the record anew; the administrator may not either.
    op = w.client("dynamodb", w.operator)
    records = op.query(TableName=catalog, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"TARGET#snapshot#{TABLE}"}})["Items"]
    held = max(records, key=lambda r: r["sk"]["S"])
    key = {"pk": held["pk"], "sk": held["sk"]}
    op.update_item(TableName=catalog, Key=key, UpdateExpression="SET legal_hold = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
    try:
        for job in FUNCTIONS:
            if job == "retention":
                continue
            ddb = as_probe(w, job, "dynamodb")
            lift = {"TableName": catalog, "Key": key, "UpdateExpression": "REMOVE legal_hold"}
            assert decision(w, job, ddb.update_item, **lift) != "Allowed", job
            replace = {"TableName": catalog, "Item": {k: v for k, v in held.items() if k != "legal_hold"}}
            assert decision(w, job, ddb.put_item, **replace) != "Allowed", job
        with pytest.raises(ClientError) as e:
            w.client("dynamodb").update_item(TableName=catalog, Key=key, UpdateExpression="REMOVE legal_hold")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        now = op.get_item(TableName=catalog, Key=key, ConsistentRead=True)["Item"]
        assert now["legal_hold"] == {"BOOL": True} and now == {**held, "legal_hold": {"BOOL": True}}, now
    finally:
        op.update_item(TableName=catalog, Key=key, UpdateExpression="REMOVE legal_hold")


def test_restore_role_restores_only_from_the_selected_tables(world):
    """Issue 35, point 5: with TableNames set, the restore role may restore only the selected
    tables' backups and point in time (the whole restore test above restored iam-orders both
    ways as this role); another table's backup or PITR is refused by IAM, whatever the code."""
    w = world
    admin = w.client("dynamodb")
    other = "iam-unselected"
    admin.create_table(
        TableName=other,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    admin.put_item(TableName=other, Item={"id": {"S": "secret"}})
    admin.update_continuous_backups(TableName=other, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    backup = admin.create_backup(TableName=other, BackupName="someone-elses")["BackupDetails"]["BackupArn"]
    ddb = as_probe(w, "restore", "dynamodb")
    assert decision(w, "restore", ddb.restore_table_from_backup, TargetTableName=f"restored-{other}", BackupArn=backup) == "ImplicitlyDenied"
    assert decision(
        w, "restore", ddb.restore_table_to_point_in_time,
        SourceTableName=other, TargetTableName=f"restored-{other}-pitr", UseLatestRestorableTime=True,
    ) == "ImplicitlyDenied"
    tables = admin.list_tables()["TableNames"]
    assert not [t for t in tables if t.startswith(f"restored-{other}")], tables
    # The selected table's, the same way: IAM lets it through (the target's name is refused
    # by moto afterwards, as one that exists: nothing is made).
    mine = admin.list_backups(TableName=TABLE)["BackupSummaries"][0]["BackupArn"]
    assert decision(w, "restore", ddb.restore_table_from_backup, TargetTableName="restored-iam-orders", BackupArn=mine) == "Allowed"
    assert decision(
        w, "restore", ddb.restore_table_to_point_in_time,
        SourceTableName=TABLE, TargetTableName="restored-iam-orders", UseLatestRestorableTime=True,
    ) == "Allowed"


def test_validate_tags_only_drill_tables_with_the_drill_tags(world):
    """Issue 35, point 7: the validate role may tag a table with the drill prefix with the
    drill's own tags (backstop:drill, backstop:drill-of) and read a drill table's tags; it may
    tag no other table, and a drill table with no other tag."""
    w = world
    prefix = w.envs["validate"]["BACKSTOP_DRILL_TABLE_PREFIX"]
    base = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    drill = base + f"{prefix}iam-probe"
    ddb = as_probe(w, "validate", "dynamodb")
    tags = [{"Key": "backstop:drill", "Value": "true"}, {"Key": "backstop:drill-of", "Value": TABLE}]
    # (no such table: moto answers ResourceNotFound once IAM has let the request through)
    assert decision(w, "validate", ddb.tag_resource, ResourceArn=drill, Tags=tags) == "Allowed"
    assert decision(w, "validate", ddb.list_tags_of_resource, ResourceArn=drill) == "Allowed"
    assert decision(w, "validate", ddb.tag_resource, ResourceArn=base + TABLE, Tags=tags) == "ImplicitlyDenied"
    assert decision(w, "validate", ddb.tag_resource, ResourceArn=drill, Tags=tags + [{"Key": "backup", "Value": "daily"}]) == "ImplicitlyDenied"
    assert decision(w, "validate", ddb.untag_resource, ResourceArn=drill, TagKeys=["backstop:drill"]) == "ImplicitlyDenied"
    for job in FUNCTIONS:
        if job != "validate":
            assert decision(w, job, as_probe(w, job, "dynamodb").tag_resource, ResourceArn=drill, Tags=tags) == "ImplicitlyDenied", job


def test_by_tag_the_restore_role_restores_point_in_time_only_from_tagged_tables():
    """Issue 35, point 5, by tag (TableNames empty): the restore role's PITR right holds only
    on a table that carries TableTag, whatever its key (the policy is built from the parameter);
    its target stays the prefix. Decided by iam-simulate on the translated template's policies
    (the stack above selects by name)."""
    node = subprocess.Popen(["node", str(HERE / "iam" / "evaluate.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for params, key, value in (({}, "backup:plan", "daily"), ({"TableTag": "team:data=gold tier"}, "team:data", "gold tier")):
            statements = [s for s in Stack(params).statements("RestoreFunctionRole") if all("<" not in r for r in as_list(s.get("Resource", "*")))]
            policy = {"Version": "2012-10-17", "Statement": statements}

            def ask(action, resource, tags):
                q = {
                    "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/backstop-RestoreFunctionRole-X/restore",
                    "action": action,
                    "resource": resource,
                    "account": ACCOUNT,
                    "context": {"aws:RequestedRegion": REGION, "aws:SecureTransport": "true", **{f"aws:ResourceTag/{k}": v for k, v in tags.items()}},
                    "policies": [policy],
                }
                node.stdin.write(json.dumps(q) + "\n")
                node.stdin.flush()
                answer = json.loads(node.stdout.readline())
                assert answer["result"] != "Error", answer
                return answer["result"]

            table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
            pitr = "dynamodb:RestoreTableToPointInTime"
            assert ask(pitr, table + "orders", {key: value}) == "Allowed", params
            assert ask(pitr, table + "orders", {key: value, "other": "x"}) == "Allowed", params
            assert ask(pitr, table + "orders", {key: value + "x"}) == "ImplicitlyDenied", params
            assert ask(pitr, table + "orders", {"other": value}) == "ImplicitlyDenied", params
            assert ask(pitr, table + "orders", {}) == "ImplicitlyDenied", params
            assert ask(pitr, table + "restored-orders", {}) == "Allowed", params
            # A backup has no tag IAM could test: by tag, any table's backup (the code refuses
            # a source outside the selection).
            assert ask("dynamodb:RestoreTableFromBackup", table + "orders/backup/01700000000000-abcdef12", {}) == "Allowed", params
    finally:
        node.stdin.close()
        node.wait(timeout=10)


def test_the_catalog_refuses_writes_from_any_other_principal(world):
    """An administrator of the account (Allow *:*) cannot forge or erase a catalog record:
    the catalog's resource policy denies every principal but the function roles."""
    w = world
    catalog = w.envs["snapshot"]["BACKSTOP_CATALOG_TABLE"]
    ddb = w.client("dynamodb")
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=catalog, Item={"pk": {"S": "TARGET#snapshot#iam-orders"}, "sk": {"S": "SLOT#forged"}})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    last = [json.loads(l) for l in Path(w.log).read_text().splitlines() if "user/test-admin" in l][-1]
    assert last["action"] == "dynamodb:PutItem" and last["result"] == "ExplicitlyDenied", last
    # Reading stays open to the account's IAM policies.
    assert ddb.query(TableName=catalog, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"TARGET#snapshot#{TABLE}"}})["Count"] >= 4


def test_nobody_but_the_retention_role_deletes_a_backup(world):
    """With BackupProtectionPolicy attached, an administrator of the account (Allow *:*) is
    refused DeleteBackup and the deletion of an export's object versions; the retention role,
    with the same policy attached, deleted its backup above."""
    w = world
    backup = w.client("dynamodb").list_backups(TableName=TABLE)["BackupSummaries"][0]["BackupArn"]
    with pytest.raises(ClientError) as e:
        w.client("dynamodb").delete_backup(BackupArn=backup)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    admin = [json.loads(l) for l in Path(w.log).read_text().splitlines() if "user/test-admin" in l]
    assert admin[-1]["action"] == "dynamodb:DeleteBackup" and admin[-1]["result"] == "ExplicitlyDenied", admin[-1]
    bucket = w.envs["export"]["BACKSTOP_EXPORT_BUCKET"]
    s3 = w.client("s3")
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="backstop/")["Contents"])
    version = s3.head_object(Bucket=bucket, Key=key).get("VersionId") or "null"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    admin = [json.loads(l) for l in Path(w.log).read_text().splitlines() if "user/test-admin" in l]
    assert admin[-1]["action"] == "s3:DeleteObjectVersion" and admin[-1]["result"] == "ExplicitlyDenied", admin[-1]
    assert [d for d in w.decisions("retention") if d["action"] == "dynamodb:DeleteBackup" and d["result"] == "Allowed"]


def test_rds_snapshot_copy_drill_and_retention_as_each_role(world):
    """An RDS instance, an Aurora cluster and an ElastiCache group through the three jobs, each
    as its role, with no table in the run (the table selection dropped): snapshots on four days
    with copies in the replica region (none of the group: ElastiCache copies in-region only), a
    drill, and retention deleting the oldest snapshot and copy. Then what each role must never
    do: delete the database or another's snapshot, modify the instance."""
    w = world
    only_db = ("BACKSTOP_TABLES",)
    start = {job: len(w.decisions(job)) for job in ("snapshot", "validate", "retention")}

    def denied_here(job):
        return [d for d in w.decisions(job)[start[job]:] if d.get("result") != "Allowed"]

    for day in old_days():
        w.set_clock(day + timedelta(seconds=5))
        rep = report(w.run("snapshot", {"slot": stamp(day)}, drop_env=only_db))
        assert sorted(t["table"] for t in rep["targets"]) == [f"aurora:{CLUSTER}", f"elasticache:{GROUP}", f"rds:{DB}"], rep
        for t in rep["targets"]:
            assert t["outcome"]["status"] == "created", rep
            assert t["table"].startswith("elasticache:") or t["replica"]["ok"], t["replica"]
    w.set_clock()
    rep = report(w.run("snapshot", {"slot": slot(2)}, drop_env=only_db))
    assert rep["status"] == "succeeded" and all(t["replica"]["ok"] for t in rep["targets"] if t.get("replica")), rep
    assert rep["selection"] == f"RDS instances {DB}; Aurora clusters {CLUSTER}; ElastiCache replication groups {GROUP}", rep["selection"]
    again = report(w.run("snapshot", {"slot": slot(2)}, drop_env=only_db))
    assert again["totals"]["already_done"] == 3 and again["totals"]["created"] == 0, again["totals"]
    assert not denied_here("snapshot"), denied_here("snapshot")
    copies = w.client("rds", region=DB_REPLICA).describe_db_snapshots(DBInstanceIdentifier=DB)["DBSnapshots"]
    assert len([c for c in copies if "-backstop-2" in c["DBSnapshotIdentifier"]]) == 4, copies

    rep = report(w.run("validate", {"slot": slot(6)}, drop_env=only_db, extra_env={"BACKSTOP_PITR_MAX_LAG": "off", "BACKSTOP_DRILLS_PER_RUN": "3"}))
    assert not denied_here("validate"), denied_here("validate")
    for t in rep["targets"]:
        drill = t["validation"]["drill"]
        assert drill["level"] == "consistent" and drill["state"] == "cleaned", (t["table"], drill)
    clusters = [c["DBClusterIdentifier"] for c in w.client("rds").describe_db_clusters()["DBClusters"]]
    assert CLUSTER in clusters and not [c for c in clusters if c.startswith("backstop-drill-")], clusters
    drill = next(t for t in rep["targets"] if t["table"] == f"rds:{DB}")["validation"]["drill"]
    left = [i["DBInstanceIdentifier"] for i in w.client("rds").describe_db_instances()["DBInstances"]]
    assert not [i for i in left if i.startswith("backstop-drill-") and i != drill["drill_table"]] and DB in left, left

    rep = report(w.run("retention", {}, drop_env=only_db))
    assert not denied_here("retention"), denied_here("retention")
    assert rep["status"] == "succeeded", json.dumps(rep, indent=1)
    # keep_daily=1 and the floor (the newest three) keep three of four, on each side, of each.
    assert rep["totals"]["deleted"] == 5, rep["totals"]
    ec = w.client("elasticache")
    cnames = {s["SnapshotName"] for s in ec.describe_snapshots(ReplicationGroupId=GROUP)["Snapshots"]}
    assert f"{GROUP}-manual-20261101" in cnames and len([n for n in cnames if "-backstop-2" in n]) == 3, cnames
    groups = [g["ReplicationGroupId"] for g in ec.describe_replication_groups()["ReplicationGroups"] if g["Status"] != "deleting"]
    assert groups == [GROUP], groups
    csnaps = w.client("rds").describe_db_cluster_snapshots(DBClusterIdentifier=CLUSTER)["DBClusterSnapshots"]
    assert len([c for c in csnaps if "-backstop-2" in c["DBClusterSnapshotIdentifier"]]) == 3, csnaps
    names = {s["DBSnapshotIdentifier"] for s in w.client("rds").describe_db_snapshots(DBInstanceIdentifier=DB)["DBSnapshots"]}
    assert {f"{DB}-manual-20261101", f"{DB}-backstop-lookalike"} <= names, names
    assert len([n for n in names if "-backstop-2" in n]) == 3, names

    snapshot_rds, validate_rds, retention_rds = (as_role(w, j, "rds") for j in ("snapshot", "validate", "retention"))
    ours = sorted(n for n in names if "-backstop-2" in n)[0]
    refused(w, "snapshot", snapshot_rds.delete_db_snapshot, DBSnapshotIdentifier=ours, explicitly=True)
    refused(w, "snapshot", snapshot_rds.delete_db_instance, DBInstanceIdentifier=DB, SkipFinalSnapshot=True)
    refused(w, "validate", validate_rds.delete_db_instance, DBInstanceIdentifier=DB, SkipFinalSnapshot=True)
    refused(w, "validate", validate_rds.modify_db_instance, DBInstanceIdentifier=DB, DeletionProtection=False)
    refused(w, "validate", validate_rds.delete_db_snapshot, DBSnapshotIdentifier=ours, explicitly=True)
    refused(w, "retention", retention_rds.delete_db_snapshot, DBSnapshotIdentifier=f"{DB}-manual-20261101")
    refused(w, "retention", retention_rds.delete_db_snapshot, DBSnapshotIdentifier=f"{DB}-backstop-lookalike")
    refused(w, "retention", retention_rds.delete_db_instance, DBInstanceIdentifier=DB, SkipFinalSnapshot=True)
    ours_c = sorted(c["DBClusterSnapshotIdentifier"] for c in csnaps if "-backstop-2" in c["DBClusterSnapshotIdentifier"])[-1]
    refused(w, "snapshot", snapshot_rds.delete_db_cluster_snapshot, DBClusterSnapshotIdentifier=ours_c, explicitly=True)
    refused(w, "validate", validate_rds.delete_db_cluster, DBClusterIdentifier=CLUSTER, SkipFinalSnapshot=True)
    refused(w, "validate", validate_rds.modify_db_cluster, DBClusterIdentifier=CLUSTER, DeletionProtection=True)
    refused(w, "retention", retention_rds.delete_db_cluster, DBClusterIdentifier=CLUSTER, SkipFinalSnapshot=True)
    snapshot_ec, validate_ec, retention_ec = (as_role(w, j, "elasticache") for j in ("snapshot", "validate", "retention"))
    ours_g = sorted(n for n in cnames if "-backstop-2" in n)[0]
    refused(w, "snapshot", snapshot_ec.delete_snapshot, SnapshotName=ours_g, explicitly=True)
    refused(w, "validate", validate_ec.delete_snapshot, SnapshotName=ours_g, explicitly=True)
    refused(w, "validate", validate_ec.delete_replication_group, ReplicationGroupId=GROUP)
    refused(w, "retention", retention_ec.delete_snapshot, SnapshotName=f"{GROUP}-manual-20261101")
    refused(w, "retention", retention_ec.delete_replication_group, ReplicationGroupId=GROUP)


def test_selection_by_tag_as_each_role(world):
    """Selection by tag (TableNames empty, the template's default): ListTables, then each
    table's tags. Dry runs, so that nothing is made or deleted."""
    w = world
    for job in ("snapshot", "export", "validate", "retention"):
        before = len(w.decisions(job))
        # (validate exits 3: the restored copies it now selects were never backed up)
        rep = report(w.run(job, {"dry_run": True}, drop_env=("BACKSTOP_TABLES",), extra_env={"BACKSTOP_TABLE_TAG": "backup=daily"}), ok=(0, 3))
        # (The restored copies carry the source's tags, so the tag selects them too.)
        # (snapshot, validate and retention also select the RDS instance, named in the stack)
        assert rep["selection"].startswith("tables tagged backup=daily") and TABLE in [t["table"] for t in rep["targets"]], (job, rep["selection"])
        refusals = [d for d in w.decisions(job)[before:] if d.get("result") != "Allowed"]
        assert not refusals, refusals


# Actions a role grants that the jobs above do not use, each with the code path that does (the
# call named is checked to be in that file) or the AWS service that uses it as the role. Kept
# honest both ways: an action used above must not be listed here.
ELSEWHERE = {
    ("*", "sqs:SendMessage"): (None, None, "Lambda itself: the asynchronous invocation's on-failure destination (the dead-letter queue) receives the event as the function's role"),
    ("snapshot", "dynamodb:ListBackups"): ("shared/src/backups.rs", ".list_backups()", "a CreateBackup whose answer was lost: the backup is found by its name (tests/tests/lost_answers.rs)"),
    ("export", "dynamodb:GetItem"): ("shared/src/jobs/export.rs", "self.catalog.get(JOB, table, slot)", "a fan-out helper reads the export's record before it takes a segment"),
    ("export", "lambda:InvokeFunction"): ("shared/src/jobs/export.rs", ".invoke_async(", "past its time budget, or with fan_out > 1, the export goes on in new invocations of itself (tests/tests/lambda_smoke.rs)"),
    ("retention", "s3:ListBucket"): ("shared/src/export/s3io.rs", ".list_objects_v2()", "an export that the export policy no longer keeps is listed, then deleted (tests/tests/export.rs)"),
    ("retention", "s3:DeleteObject"): ("shared/src/export/s3io.rs", ".delete_objects()", "the same export's objects deleted"),
    ("restore", "dynamodb:UpdateTable"): ("shared/src/table_settings.rs", "ddb.update_table()", "settings re-applied: indexes, capacity, stream, deletion protection (tables that have them)"),
    ("restore", "dynamodb:UpdateTimeToLive"): ("shared/src/table_settings.rs", "ddb.update_time_to_live()", "settings re-applied: TTL (tables that have one)"),
    ("restore", "kms:GenerateDataKey"): (None, None, "Lambda itself: its on-failure destination is a queue encrypted with the stack's key, and sending to it needs kms:GenerateDataKey (and Decrypt) as the function's role (the role writes no S3 object)"),
    ("restore", "lambda:InvokeFunction"): ("shared/src/restore/request.rs", ".invoke_async(", "a restore past its time budget goes on in a new invocation of itself (tests/tests/restore_fn.rs)"),
    ("bucket", "lambda:InvokeFunction"): ("shared/src/jobs/bucket.rs", ".invoke_async(", "a bucket backup past its time budget goes on in a new invocation of itself (tests/tests/lambda_smoke.rs)"),
    ("bucket", "s3:GetBucketObjectLockConfiguration"): ("shared/src/bucket/s3.rs", ".get_object_lock_configuration()", "a prune that keeps a slot on legal hold asks whether the store has Object Lock (tests/tests/buckets.rs)"),
    ("bucket", "s3:PutObjectLegalHold"): ("shared/src/bucket/s3.rs", ".put_object_legal_hold()", "a held slot in a store with Object Lock gets an Object Lock legal hold (tests/tests/buckets.rs)"),
    ("bucket", "s3:AbortMultipartUpload"): ("shared/src/bucket/s3.rs", ".abort_multipart_upload()", "a multipart copy of an object over 5 GB that fails is aborted"),
    ("bucket", "s3:GetBucketTagging"): ("shared/src/selection.rs", "s3.get_bucket_tagging()", "selection of buckets by tag (BucketTag)"),
    ("bucket", "s3:GetObjectTagging"): ("shared/src/bucket/s3.rs", ".get_object_tagging()", "an object whose tags must be set again on its copy"),
    ("validate", "rds:ModifyDBCluster"): ("shared/src/db/aurora.rs", ".modify_db_cluster()", "a drill cluster that kept deletion protection on (the restore asks for it off; moto honours that for clusters) has it turned off before its delete; no test here reaches it"),
    ("snapshot", "elasticache:DescribeSnapshots"): ("shared/src/db/elasticache.rs", ".describe_snapshots()", "a CreateSnapshot whose answer was lost, or refused as existing: the snapshot is looked up by its name (tests/tests/databases.rs, a_lost_elasticache_create_answer_...)"),
    ("snapshot", "elasticache:ListTagsForResource"): ("shared/src/db/elasticache.rs", ".list_tags_for_resource()", "selection by tag (ElastiCacheTagValue), and the slot tag of a snapshot looked up by its name"),
    ("summary", "dynamodb:DeleteItem"): ("shared/src/summary.rs", ".delete_item()", "a summary that could not be published releases its marker, so that the next delivery sends it"),
}


def called_in_code(path, snippet):
    return snippet in (ROOT / path).read_text()


def granted(policies):
    """(action, resource) pairs the role's Allow statements grant, actions as written."""
    out = set()
    for doc in policies:
        for st in doc["Statement"]:
            if st["Effect"] != "Allow":
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st.get("Resource", "*")
            resources = resources if isinstance(resources, list) else [resources]
            for a in actions:
                for r in resources:
                    out.add((a, r))
    return out


def test_zz_every_granted_action_is_used(world):
    """Runs last (pytest keeps file order): every action a role grants was used by its job
    above, or is named here with the code path or AWS service that uses it."""
    w = world
    problems = []
    for job in FUNCTIONS:
        # (the probes' requests are not a job's use)
        used = {d["action"] for d in w.decisions(job, probes=False) if d.get("result") == "Allowed"}
        grants = {a for a, _ in granted(w.policies[job])}
        assert not [a for a in grants if "*" in a], (job, grants)
        for action in sorted(grants - used):
            why = ELSEWHERE.get((job, action)) or ELSEWHERE.get(("*", action))
            if why is None:
                problems.append(f"{job}: {action} is granted and no code path here uses it")
            elif why[0] and not called_in_code(why[0], why[1]):
                problems.append(f"{job}: {action}: {why[0]} has no {why[1]}")
        for (j, action) in ELSEWHERE:
            if j == job and action in used:
                problems.append(f"{job}: {action} is used above: drop it from ELSEWHERE")
            if j == job and action not in grants:
                problems.append(f"{job}: {action} is not granted: drop it from ELSEWHERE")
        print(f"{job}: {len(used & grants)} of {len(grants)} granted actions used here; {len(grants - used)} elsewhere")
    assert not problems, "\n".join(problems)
