"""The SCP the README offers (infra/policies/scp-protect-backups.json), evaluated the way AWS
Organizations applies it (iam-simulate, as in the IAM-enforced tests): an account administrator
with Allow *:* cannot delete a backup, a backup object version, or lift the buckets' and the
catalog's, the functions' or their roles' guards; Backstop's retention role still deletes
backups; the deploy role can still change what the stack owns."""

import json
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCP = HERE.parent / "policies" / "scp-protect-backups.json"
ACCOUNT = "123456789012"
VALUES = {
    "ACCOUNT_ID": ACCOUNT,
    "RETENTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/backstop-RetentionFunctionRole-ABC123",
    "DEPLOY_ROLE_NAME": "backstop-deploy",
    "EXPORTS_BUCKET": "backstop-exports",
    "EXPORT_PREFIX": "backstop",
    "BUCKET_BACKUPS_BUCKET": "backstop-bucket-backups",
    "BUCKET_BACKUP_PREFIX": "buckets",
    "STACK_NAME": "backstop",
}
ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ADMIN = f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice"
RETENTION = f"arn:aws:sts::{ACCOUNT}:assumed-role/backstop-RetentionFunctionRole-ABC123/backstop-retention"
DEPLOY = f"arn:aws:sts::{ACCOUNT}:assumed-role/backstop-deploy/cloudformation"
# A role named to look like the retention role: the SCP names the exact ARN.
LOOKALIKE = f"arn:aws:sts::{ACCOUNT}:assumed-role/backstop-RetentionFunctionRole-ABC1234/x"
BACKUP = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Orders/backup/01700000000000-abcdef12"


def scp():
    text = SCP.read_text()
    for k, v in VALUES.items():
        text = text.replace(k, v)
    return json.loads(text)


@pytest.fixture(scope="module")
def ask():
    node = subprocess.Popen(["node", str(HERE / "iam" / "evaluate.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def decide(principal, action, resource, policies=(ALL,), scps=None):
        role = principal.split(":assumed-role/")[1].split("/")[0]
        q = {
            "principal": principal,
            "action": action,
            "resource": resource,
            "account": ACCOUNT,
            "context": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "aws:SecureTransport": "true"},
            "policies": list(policies),
            "scps": [scp()] if scps is None else scps,
        }
        node.stdin.write(json.dumps(q) + "\n")
        node.stdin.flush()
        answer = json.loads(node.stdout.readline())
        assert answer["result"] != "Error", answer
        return answer["result"]

    yield decide
    node.stdin.close()
    node.wait(timeout=10)


def test_without_the_scp_an_administrator_deletes_anything(ask):
    # The baseline the SCP changes: identity policies alone let an admin delete a backup.
    assert ask(ADMIN, "dynamodb:DeleteBackup", BACKUP, scps=[]) == "Allowed"


def test_an_administrator_cannot_delete_a_backup_or_a_backup_objects_version(ask):
    assert ask(ADMIN, "dynamodb:DeleteBackup", BACKUP) == "ExplicitlyDenied"
    assert ask(ADMIN, "s3:DeleteObjectVersion", "arn:aws:s3:::backstop-exports/backstop/Orders/20261122T030000Z/backstop-manifest.json") == "ExplicitlyDenied"
    assert ask(ADMIN, "s3:DeleteObjectVersion", "arn:aws:s3:::backstop-bucket-backups/buckets/app/objects/ab") == "ExplicitlyDenied"
    # Plain DeleteObject (a delete marker; the version stays until the lifecycle) is not the
    # SCP's business: retention prunes exports that way.
    assert ask(ADMIN, "s3:DeleteObject", "arn:aws:s3:::backstop-exports/backstop/Orders/x") == "Allowed"
    # Nor are other buckets' versions.
    assert ask(ADMIN, "s3:DeleteObjectVersion", "arn:aws:s3:::someone-elses/backstop/x") == "Allowed"


def test_an_administrator_cannot_lift_the_guards_but_the_deploy_role_can(ask):
    for action, resource in (
        ("s3:PutBucketVersioning", "arn:aws:s3:::backstop-exports"),
        ("s3:PutLifecycleConfiguration", "arn:aws:s3:::backstop-bucket-backups"),
        ("s3:PutBucketPolicy", "arn:aws:s3:::backstop-exports"),
        ("s3:BypassGovernanceRetention", "arn:aws:s3:::backstop-exports/backstop/Orders/x"),
        ("dynamodb:DeleteResourcePolicy", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/backstop-catalog"),
        ("dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/backstop-catalog"),
        ("lambda:UpdateFunctionConfiguration", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:backstop-retention"),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/backstop-RetentionFunctionRole-ABC123"),
    ):
        assert ask(ADMIN, action, resource) == "ExplicitlyDenied", action
        assert ask(DEPLOY, action, resource) == "Allowed", action
    # Other tables stay the account's.
    assert ask(ADMIN, "dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Orders") == "Allowed"


def test_the_retention_role_still_deletes_backups_and_nothing_else_it_may_not(ask):
    grant = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:DeleteBackup", "Resource": "arn:aws:dynamodb:*:*:table/*/backup/*"}]}
    assert ask(RETENTION, "dynamodb:DeleteBackup", BACKUP, policies=[grant]) == "Allowed"
    assert ask(LOOKALIKE, "dynamodb:DeleteBackup", BACKUP, policies=[grant]) == "ExplicitlyDenied"
    # The SCP grants nothing by itself.
    assert ask(RETENTION, "dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/Orders", policies=[grant]) == "ImplicitlyDenied"
    # Even the retention role cannot remove a version.
    assert ask(RETENTION, "s3:DeleteObjectVersion", "arn:aws:s3:::backstop-exports/backstop/x", policies=[ALL]) == "ExplicitlyDenied"
