"""The SAM template: expanded with aws-sam-translator, deployed to moto's CloudFormation.

moto's CloudFormation cannot create alarms, EventBridge Scheduler schedules, bucket policies,
SNS subscriptions or Lambda event-invoke configs; those resources are left out of the deployed
copy (and listed by name in the test), and cfn-lint and checkov check them in `make test`.
"""

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The translator reads the region from the default boto3 session.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
NOT_IN_MOTO = {
    "AWS::CloudWatch::Alarm",
    "AWS::Scheduler::Schedule",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
}


class NoManagedPolicies:
    """The template names no AWS managed policies, so the translator needs no IAM lookups."""

    def load(self):
        return {}


@pytest.fixture(scope="module")
def moto_endpoint():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
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
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def client(name, endpoint):
    return boto3.client(
        name,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="backstop-local",
        aws_secret_access_key="backstop-local",
    )


def translated(code_uris):
    template = yaml_parse(TEMPLATE.read_text())
    for name, uri in code_uris.items():
        template["Resources"][name]["Properties"]["CodeUri"] = uri
    params = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    return transform(template, params, NoManagedPolicies())


def test_sam_transform_yields_least_privilege_roles_and_idempotent_schedules():
    out = translated({"SnapshotFunction": "s3://a/s.zip", "RetentionFunction": "s3://a/r.zip"})
    res = out["Resources"]
    schedules = {k: v for k, v in res.items() if v["Type"] == "AWS::Scheduler::Schedule"}
    assert len(schedules) == 2, sorted(res)
    for s in schedules.values():
        target = s["Properties"]["Target"]
        assert json.loads(target["Input"]) == {"slot": "<aws.scheduler.scheduled-time>"}
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185
        assert "DeadLetterConfig" in target
    roles = {k: v for k, v in res.items() if v["Type"] == "AWS::IAM::Role"}
    fn_roles = {k: v for k, v in roles.items() if k in ("SnapshotFunctionRole", "RetentionFunctionRole")}
    assert len(fn_roles) == 2, sorted(roles)

    def statements(role):
        return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]

    for name, role in fn_roles.items():
        for s in statements(role):
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), (name, s)
            if s["Resource"] == "*":
                # Only actions without resource-level permissions may name every resource.
                assert set(actions) <= {"dynamodb:ListTables", "cloudwatch:PutMetricData"}, (name, s)
    deletes = {
        name: [a for s in statements(role) for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]) if "Delete" in a]
        for name, role in fn_roles.items()
    }
    assert deletes == {"SnapshotFunctionRole": [], "RetentionFunctionRole": ["dynamodb:DeleteBackup"]}
    retention_delete = [s for s in statements(fn_roles["RetentionFunctionRole"]) if "dynamodb:DeleteBackup" in s["Action"]][0]
    assert retention_delete["Resource"]["Fn::Sub"].endswith(":table/*/backup/*")


def test_exports_bucket_has_versioning_lifecycle_tiers_and_no_public_access():
    props = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = props["LifecycleConfiguration"]["Rules"][0]
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER", 90),
        ("DEEP_ARCHIVE", 365),
    ]
    assert rule["ExpirationInDays"] == 7 * 365
    assert all(props["PublicAccessBlockConfiguration"].values())
    policy = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucketPolicy"]["Properties"]["PolicyDocument"]
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_template_deploys_to_moto_cloudformation(moto_endpoint):
    s3 = client("s3", moto_endpoint)
    s3.create_bucket(Bucket="backstop-artifacts")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    for key in ("snapshot.zip", "retention.zip"):
        s3.put_object(Bucket="backstop-artifacts", Key=key, Body=buf.getvalue())
    out = translated(
        {
            "SnapshotFunction": "s3://backstop-artifacts/snapshot.zip",
            "RetentionFunction": "s3://backstop-artifacts/retention.zip",
        }
    )
    for fn in ("SnapshotFunction", "RetentionFunction"):
        assert out["Resources"][fn]["Properties"]["Architectures"] == ["arm64"]
    left_out = sorted(k for k, v in out["Resources"].items() if v["Type"] in NOT_IN_MOTO)
    out["Resources"] = {k: v for k, v in out["Resources"].items() if v["Type"] not in NOT_IN_MOTO}
    assert "BackupFailureAlarm" in left_out and "SnapshotFunctionDaily" in left_out, left_out

    cfn = client("cloudformation", moto_endpoint)
    cfn.create_stack(
        StackName="backstop",
        TemplateBody=json.dumps(out),
        Parameters=[{"ParameterKey": "AlarmEmail", "ParameterValue": "ops@example.com"}],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName="backstop")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="backstop")["StackResources"]
    }

    # The catalog table, with its key schema.
    table = client("dynamodb", moto_endpoint).describe_table(TableName=outputs["CatalogTableName"])["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    # The exports bucket, encrypted with the stack's key. (moto's CloudFormation applies only
    # the encryption of AWS::S3::Bucket; versioning, lifecycle and public-access blocks are
    # checked on the template below and by checkov.)
    bucket = outputs["ExportsBucketName"]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    # The topic.
    topics = [t["TopicArn"] for t in client("sns", moto_endpoint).list_topics()["Topics"]]
    assert outputs["NotificationTopicArn"] in topics
    # The functions (moto records the runtime, not the architecture, checked above), configured
    # with the catalog and the topic.
    lam = client("lambda", moto_endpoint)
    for name in ("SnapshotFunctionName", "RetentionFunctionName"):
        conf = lam.get_function_configuration(FunctionName=outputs[name])
        assert conf["Runtime"] == "provided.al2023", conf
        env = conf["Environment"]["Variables"]
        assert env["BACKSTOP_CATALOG_TABLE"] == outputs["CatalogTableName"]
        assert env["BACKSTOP_TOPIC_ARN"] == outputs["NotificationTopicArn"]
        assert env["BACKSTOP_TABLE_TAG"] == "backup:plan=daily"
    # One role per function.
    iam = client("iam", moto_endpoint)
    for logical in ("SnapshotFunctionRole", "RetentionFunctionRole"):
        assert iam.get_role(RoleName=physical[logical])["Role"]["Arn"]
    # The dead-letter queue and the key.
    assert client("sqs", moto_endpoint).get_queue_url(QueueName=physical["DeadLetterQueue"].rsplit("/", 1)[-1])
    # (moto's DescribeKey fails on a key CloudFormation made with a policy document, so look for
    # the key through its alias.)
    kms = client("kms", moto_endpoint)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    key_ids = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    assert aliases.get("alias/backstop-backstop") in key_ids, (aliases, key_ids)
