"""The SAM template: expanded with aws-sam-translator, deployed to moto's CloudFormation.

moto's CloudFormation cannot create alarms, EventBridge Scheduler schedules, bucket policies,
SNS topic policies, SNS subscriptions or Lambda event-invoke configs; those resources are left out
of the deployed copy (and listed by name in the test), and cfn-lint and checkov check them in
`make test`. The security properties (issue 7) are asserted on the SAM-translated template, with
its conditions and intrinsic functions evaluated for given parameter values (`Stack` below).
"""

import ast
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
from pathlib import Path

import boto3
import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The translator reads the region from the default boto3 session.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
ROOT = TEMPLATE.parents[1]
NOT_IN_MOTO = {
    "AWS::CloudWatch::Alarm",
    "AWS::Scheduler::Schedule",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
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


CODE_URIS = {
    "SnapshotFunction": "s3://a/s.zip",
    "RetentionFunction": "s3://a/r.zip",
    "ExportFunction": "s3://a/e.zip",
    "ValidateFunction": "s3://a/v.zip",
    "RestoreFunction": "s3://a/x.zip",
    "BucketFunction": "s3://a/b.zip",
    "SummaryFunction": "s3://a/y.zip",
}
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "backstop",
}
ACCOUNT = PSEUDO["AWS::AccountId"]
FUNCTIONS = (
    "SnapshotFunction",
    "RetentionFunction",
    "ExportFunction",
    "ValidateFunction",
    "RestoreFunction",
    "BucketFunction",
    "SummaryFunction",
)
FUNCTION_ROLES = (
    "SnapshotFunctionRole",
    "RetentionFunctionRole",
    "ExportFunctionRole",
    "ValidateFunctionRole",
    "RestoreFunctionRole",
    "BucketFunctionRole",
    "SummaryFunctionRole",
)
SCHEDULE_ROLES = (
    "SnapshotScheduleRole",
    "RetentionScheduleRole",
    "ExportScheduleRole",
    "ValidateScheduleRole",
    "BucketScheduleRole",
    "SummaryScheduleRole",
)
# The bucket function's schedule (and its role) exist only with a bucket selection.
BUCKET_SELECTED = {"BucketNames": "app-uploads,app-media"}
EXPORT_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:backstop-export"
BUCKET_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:backstop-bucket"
CATALOG_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-catalog"
CATALOG_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}
# The only AWS managed policy any Backstop role may carry (SAM attaches it to function roles:
# CloudWatch Logs streams and events, nothing else).
ALLOWED_MANAGED_POLICIES = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
# Actions the Service Authorization Reference lists with no resource type: they can only be
# granted on "*". (dynamodb:ListBackups cannot be scoped to a table ARN: its TableName is a
# request filter, not a resource; on a table ARN the grant would never match. The same holds for
# dynamodb:ListExports and its TableArn.)
NO_RESOURCE_LEVEL = {
    "dynamodb:ListTables",
    "dynamodb:ListBackups",
    "dynamodb:ListExports",
    "cloudwatch:PutMetricData",
    "s3:ListAllMyBuckets",
}
# Read-only RDS listings granted on "*" although the Service Authorization Reference gives them
# a resource type: a tag selection lists every instance (DescribeDBInstances with no
# identifier) and a snapshot is looked up by name here and in the replica region; RDS's own
# example policies grant them on "*". They read metadata only, never data.
RDS_LISTINGS = {
    "rds:DescribeDBInstances",
    "rds:DescribeDBSnapshots",
    "rds:DescribeDBClusters",
    "rds:DescribeDBClusterSnapshots",
    # ElastiCache's the same way: the groups a tag selects, their tags, a snapshot by its name.
    "elasticache:DescribeReplicationGroups",
    "elasticache:DescribeCacheClusters",
    "elasticache:DescribeSnapshots",
    "elasticache:ListTagsForResource",
}


def translated(code_uris, params=None):
    template = yaml_parse(TEMPLATE.read_text())
    for name, uri in code_uris.items():
        template["Resources"][name]["Properties"]["CodeUri"] = uri
    values = {k: v for k, v in PSEUDO.items() if k != "AWS::StackName"}
    values.update(params or {})
    return transform(template, values, NoManagedPolicies())


NO_VALUE = object()


class Stack:
    """The translated template as CloudFormation would see it for given parameter values.

    The translator keeps Fn::If, Fn::Sub, Fn::Join and Fn::Split in its output; `resolve`
    evaluates them (conditions included) the way CloudFormation does. References to resources
    stay symbolic: `<Topic>` for a Ref, `<Key.Arn>` for a GetAtt (also inside Fn::Sub).
    """

    _translations = {}

    def __init__(self, params=None, stack_name="backstop"):
        params = dict(params or {})
        # One translation per set of parameter values (the translator is the slow part);
        # nothing below changes its output.
        key = tuple(sorted(params.items()))
        if key not in Stack._translations:
            Stack._translations[key] = translated(CODE_URIS, params)
        self.out = Stack._translations[key]
        self.resources = self.out["Resources"]
        defaults = {k: str(v.get("Default", "")) for k, v in self.out.get("Parameters", {}).items()}
        self.values = {**defaults, **{k: str(v) for k, v in params.items()}, **PSEUDO, "AWS::StackName": stack_name}
        self.stack_name = stack_name

    def condition(self, name):
        return bool(self.resolve(self.out["Conditions"][name]))

    def _ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        assert name in self.resources, f"Ref to unknown {name}"
        return f"<{name}>"

    def _sub(self, text, variables):
        def one(m):
            name = m.group(1)
            if name in variables:
                return variables[name]
            if "." in name:
                res, attr = name.split(".", 1)
                assert res in self.resources, f"GetAtt of unknown {res}"
                return f"<{res}.{attr}>"
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                res, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                assert res in self.resources, f"GetAtt of unknown {res}"
                return f"<{res}.{attr}>"
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Fn::Join":
                delimiter, items = arg
                assert isinstance(delimiter, str), "Fn::Join takes no function as its delimiter"
                return delimiter.join(self.resolve(items))
            if key == "Fn::Split":
                delimiter, text = arg
                return self.resolve(text).split(delimiter)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(text, {k: self.resolve(v) for k, v in variables.items()})
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}

    def props(self, name):
        return self.resolve(self.resources[name]["Properties"])

    def exists(self, name):
        """Whether CloudFormation creates the resource (its Condition, if any, holds)."""
        condition = self.resources[name].get("Condition")
        return condition is None or self.condition(condition)

    def of_type(self, type_):
        """The resources of a type that the parameter values create."""
        return {k: self.props(k) for k, v in self.resources.items() if v["Type"] == type_ and self.exists(k)}

    def statements(self, role):
        """The role's inline statements: its own Policies and those of the AWS::IAM::Policy
        resources attached to it that the parameters create (a document given as JSON text is
        parsed, as IAM would)."""
        props = self.props(role)
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        for policy in self.of_type("AWS::IAM::Policy").values():
            if f"<{role}>" in policy["Roles"]:
                document = policy["PolicyDocument"]
                documents.append(json.loads(document) if isinstance(document, str) else document)
        return [s for d in documents for s in d["Statement"]]

    def statements_with(self, role, action):
        return [s for s in self.statements(role) if s["Effect"] == "Allow" and action in as_list(s["Action"])]

    def grants(self, role):
        """{action: [resources]} over the role's inline Allow statements."""
        out = {}
        for s in self.statements(role):
            if s["Effect"] == "Deny":
                # Every function role but retention's denies itself DeleteBackup, and all but
                # retention's and the bucket function's any write that names legal_hold; only
                # the bucket function's role carries other Deny statements (see `denies`).
                assert role == "BucketFunctionRole" or s.get("Sid") in OWN_DENIES, (role, s)
                continue
            assert s["Effect"] == "Allow", (role, s)
            for a in as_list(s["Action"]):
                out.setdefault(a, []).extend(as_list(s["Resource"]))
        return out

    def denies(self, role):
        """The role's inline Deny statements."""
        return [s for s in self.statements(role) if s["Effect"] == "Deny"]


# The Deny statements a function role carries for itself (tested below).
OWN_DENIES = {"NeverDeleteBackups", "NeverChangeLegalHolds"}


def as_list(value):
    return value if isinstance(value, list) else [value]


def table_names(arns, suffix=""):
    """The table names in per-table ARNs (any partition, region and account: see the template)."""
    names = []
    for arn in arns:
        prefix = r"arn:(\*|aws):dynamodb:(\*|us-east-1):(\*|123456789012):table/([^/*]+)"
        m = re.fullmatch(prefix + re.escape(suffix), arn)
        assert m, arn
        names.append(m.group(4))
    return names


RDS_BY_NAME = {"RdsInstances": "orders-db,ledger-db", "DbReplicaRegion": "us-west-2"}
CACHE_BY_NAME = {"ElastiCacheGroups": "sessions,carts", "ElastiCacheRetentionPolicy": "keep_last=28"}
CACHE_BY_TAG = {"ElastiCacheTagValue": "6h", "DbReplicaRegion": "us-west-2"}
AURORA_BY_NAME = {"AuroraClusters": "books", "DbReplicaRegion": "us-west-2", "AuroraRetentionPolicy": "keep_daily=7"}
RDS_BY_TAG = {
    "RdsTagValue": "daily",
    "DbReplicaRegion": "eu-west-1",
    "DbReplicaKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "RdsRetentionPolicy": "keep_weekly=5",
}

# Every combination of the parameters that change a role.
PARAM_SETS = [
    {},
    RDS_BY_NAME,
    RDS_BY_TAG,
    AURORA_BY_NAME,
    CACHE_BY_NAME,
    CACHE_BY_TAG,
    {"EnablePitr": "true"},
    {"TableNames": "SalesTable,BuyersTable"},
    {"TableNames": "SalesTable,BuyersTable", "EnablePitr": "true"},
    {"ExportBucketName": "corp-dynamo-exports", "ExportPrefix": "teams/orders"},
    BUCKET_SELECTED,
    {"BucketPattern": "prod-*", "BucketEnforceGuards": "true"},
    {
        "BucketTag": "backup=daily",
        "ReplicaBucketName": "dr-bucket-backups",
        "ReplicaRegion": "us-west-2",
        "ReplicaKmsKeyArn": "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "BucketBackupPrefix": "backstop/buckets",
    },
]


def test_sam_transform_yields_least_privilege_roles_and_idempotent_schedules():
    out = translated(CODE_URIS)
    res = out["Resources"]
    schedules = {k: v for k, v in res.items() if v["Type"] == "AWS::Scheduler::Schedule"}
    # The bucket function's schedule is the template's own (with its condition), not SAM's;
    # the summary function has two (daily, monthly).
    assert len(schedules) == 7, sorted(res)
    for name, s in schedules.items():
        target = s["Properties"]["Target"]
        summary = {"SummaryFunctionDaily": "daily", "SummaryFunctionMonthly": "monthly"}.get(name)
        slot = {"slot": "<aws.scheduler.scheduled-time>"}
        assert json.loads(target["Input"]) == ({"summary": summary, **slot} if summary else slot), name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185
        assert "DeadLetterConfig" in target
    roles = {k for k, v in res.items() if v["Type"] == "AWS::IAM::Role"}
    assert set(FUNCTION_ROLES) <= roles, sorted(roles)

    for params in PARAM_SETS:
        stack = Stack(params)
        for name in FUNCTION_ROLES:
            for s in stack.statements(name):
                actions = as_list(s["Action"])
                assert "*" not in actions and not any(a.endswith(":*") for a in actions), (name, s)
                if s["Effect"] == "Deny":
                    # Denies only narrow (tested with the bucket function's role), and each
                    # role's own NeverDeleteBackups and NeverChangeLegalHolds.
                    assert name == "BucketFunctionRole" or s.get("Sid") in OWN_DENIES, (name, s)
                    continue
                if s["Resource"] == "*":
                    # Only actions without resource-level permissions may name every resource.
                    assert set(actions) <= NO_RESOURCE_LEVEL | RDS_LISTINGS, (name, s)
                else:
                    # ...and those must name "*", or they are never allowed.
                    assert not set(actions) & NO_RESOURCE_LEVEL, (name, s)
        deletes = {
            name: sorted(a for a in stack.grants(name) if "Delete" in a) for name in FUNCTION_ROLES
        }
        rds, aurora = stack.condition("HasRds"), stack.condition("HasAurora")
        cache = stack.condition("HasCache")
        assert deletes == {
            "SnapshotFunctionRole": [],
            # With RDS instances selected: Backstop's snapshots of them (tested below).
            "RetentionFunctionRole": ["dynamodb:DeleteBackup"]
            + (["rds:DeleteDBClusterSnapshot"] if aurora else [])
            + (["elasticache:DeleteSnapshot"] if cache else [])
            + (["rds:DeleteDBSnapshot"] if rds else [])
            + ["s3:DeleteObject"],
            "ExportFunctionRole": [],
            # Drill tables only (the prefix): RestoreTableFromBackup needs the item actions on
            # its target, and the drill deletes its table at the end.
            # With RDS instances selected, its own drill instances (the prefix and the tag).
            "ValidateFunctionRole": ["dynamodb:DeleteItem", "dynamodb:DeleteTable"]
            + (["elasticache:DeleteReplicationGroup"] if cache else [])
            + (["rds:DeleteDBCluster"] if aurora else [])
            + (["rds:DeleteDBInstance"] if rds else []),
            # Restored tables' items (a chain's removed keys; RestoreTableFromBackup's target)
            # and the restores' own catalog records: no table, no backup, no object.
            "RestoreFunctionRole": ["dynamodb:DeleteItem"],
            # Its locks in the catalog, and the prune: in the backup stores only (tested below).
            "BucketFunctionRole": ["dynamodb:DeleteItem", "s3:DeleteObject"],
            # Its own markers in the catalog (SUMMARY#..., tested below).
            "SummaryFunctionRole": ["dynamodb:DeleteItem"],
        }
        for action in ("dynamodb:DeleteItem", "dynamodb:DeleteTable", "dynamodb:PutItem", "dynamodb:Scan"):
            assert stack.grants("ValidateFunctionRole")[action] == [
                "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-drill-*"
            ] + (["arn:aws:dynamodb:us-east-1:123456789012:table/backstop-catalog"] if action == "dynamodb:PutItem" else []) + (
                ["arn:aws:dynamodb:us-east-1:123456789012:table/backstop-catalog"] if action == "dynamodb:Scan" else []
            ), action
        for name in ("SnapshotFunctionRole", "RetentionFunctionRole"):
            assert stack.grants(name)["dynamodb:ListBackups"] == ["*"], name
        assert "dynamodb:ListExports" not in stack.grants("ExportFunctionRole")
    retention_delete = Stack().grants("RetentionFunctionRole")["dynamodb:DeleteBackup"]
    assert retention_delete == ["arn:aws:dynamodb:us-east-1:123456789012:table/*/backup/*"]


def test_schedule_roles_invoke_only_their_function_and_may_write_the_encrypted_dead_letter_queue():
    stack = Stack(BUCKET_SELECTED)
    schedules = stack.of_type("AWS::Scheduler::Schedule")
    assert len(schedules) == 7
    seen = set()
    for name, schedule in schedules.items():
        target = schedule["Target"]
        function = target["Arn"]
        role = re.fullmatch(r"<(\w+)\.Arn>", target["RoleArn"]).group(1)
        seen.add(role)
        assert role in SCHEDULE_ROLES, (name, role)
        assert target["DeadLetterConfig"]["Arn"] == "<DeadLetterQueue.Arn>"
        # The queue is encrypted with the stack's key: Scheduler writes it as this role.
        assert stack.props("DeadLetterQueue")["KmsMasterKeyId"] == "<Key>"
        assert stack.grants(role) == {
            "lambda:InvokeFunction": [function],
            "sqs:SendMessage": ["<DeadLetterQueue.Arn>"],
            "kms:GenerateDataKey": ["<Key.Arn>"],
            "kms:Decrypt": ["<Key.Arn>"],
        }, (name, role)
        trust = stack.props(role)["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
            }
        ], role
    assert seen == set(SCHEDULE_ROLES)
    functions = {s["Target"]["Arn"] for s in schedules.values()}
    assert functions == {
        "<SnapshotFunction.Arn>",
        "<RetentionFunction.Arn>",
        "<ExportFunction.Arn>",
        "<ValidateFunction.Arn>",
        "<BucketFunction.Arn>",
        "<SummaryFunction.Arn>",
    }


def test_schedule_names_start_with_the_stack_name():
    for stack_name in ("backstop", "backstop-eu"):
        stack = Stack(BUCKET_SELECTED, stack_name=stack_name)
        names = {k: v["Name"] for k, v in stack.of_type("AWS::Scheduler::Schedule").items()}
        assert names == {
            "SnapshotFunctionDaily": f"{stack_name}-snapshot",
            "RetentionFunctionDaily": f"{stack_name}-retention",
            "ExportFunctionWeekly": f"{stack_name}-export",
            "ValidateFunctionDaily": f"{stack_name}-validate",
            "BucketFunctionDaily": f"{stack_name}-bucket",
            "SummaryFunctionDaily": f"{stack_name}-summary-daily",
            "SummaryFunctionMonthly": f"{stack_name}-summary-monthly",
        }


def test_delete_backup_is_scoped_to_the_named_tables_backups():
    named = Stack({"TableNames": "SalesTable,BuyersTable"})
    (statement,) = named.statements_with("RetentionFunctionRole", "dynamodb:DeleteBackup")
    assert as_list(statement["Action"]) == ["dynamodb:DeleteBackup"]
    assert table_names(as_list(statement["Resource"]), "/backup/*") == ["SalesTable", "BuyersTable"]
    # Fn::Join takes no function as its delimiter, so the per-table ARNs leave the region open;
    # the condition closes it.
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}

    by_tag = Stack()
    assert by_tag.grants("RetentionFunctionRole")["dynamodb:DeleteBackup"] == [
        "arn:aws:dynamodb:us-east-1:123456789012:table/*/backup/*"
    ]
    # Nobody else may delete anything, but validate its own drill tables and restore items of
    # the tables it restores (and its own catalog records, by the condition tested below).
    drill = ["arn:aws:dynamodb:us-east-1:123456789012:table/backstop-drill-*"]
    restored = ["arn:aws:dynamodb:us-east-1:123456789012:table/restored-*", CATALOG_ARN]
    for stack in (named, by_tag):
        for role in stack.of_type("AWS::IAM::Role"):
            deletes = {a: r for a, r in stack.grants(role).items() if "Delete" in a}
            if role == "ValidateFunctionRole":
                assert deletes == {"dynamodb:DeleteTable": drill, "dynamodb:DeleteItem": drill}, deletes
            elif role == "RestoreFunctionRole":
                assert deletes == {"dynamodb:DeleteItem": restored}, deletes
            elif role == "BucketFunctionRole":
                # Its locks (by condition, tested below) and its prune of the backup bucket.
                assert deletes == {
                    "dynamodb:DeleteItem": [CATALOG_ARN],
                    "s3:DeleteObject": ["<BucketBackupsBucket.Arn>/buckets/*"],
                }, deletes
            elif role == "SummaryFunctionRole":
                # Its own markers (by the condition tested with it), nothing else.
                assert deletes == {"dynamodb:DeleteItem": [CATALOG_ARN]}, deletes
            elif role != "RetentionFunctionRole":
                assert not deletes, role


def test_table_names_parameter_allows_only_comma_separated_table_names():
    pattern = yaml_parse(TEMPLATE.read_text())["Parameters"]["TableNames"]["AllowedPattern"]
    for good in ("", "SalesTable", "SalesTable,BuyersTable", "a.b-c_D9", "x" * 255):
        assert re.fullmatch(pattern, good), good
    bad_values = ("Sales Table", "SalesTable, BuyersTable", "ab", "SalesTable,", ",SalesTable", "a,,b")
    for bad in bad_values + ("a/b", "a*b", "x" * 256):
        assert not re.fullmatch(pattern, bad), bad


def test_update_continuous_backups_only_for_snapshot_and_only_when_pitr_is_enabled():
    for params in ({}, {"TableNames": "SalesTable,BuyersTable"}, {"EnablePitr": "false"}):
        stack = Stack(params)
        for role in stack.of_type("AWS::IAM::Role"):
            grants = stack.grants(role)
            if role == "RestoreFunctionRole":
                # Turning PITR on for the tables it restores (a setting re-applied), only.
                assert grants["dynamodb:UpdateContinuousBackups"] == [
                    "arn:aws:dynamodb:us-east-1:123456789012:table/restored-*"
                ], params
                continue
            assert "dynamodb:UpdateContinuousBackups" not in grants, (params, role)

    by_tag = Stack({"EnablePitr": "true"})
    named = Stack({"EnablePitr": "true", "TableNames": "SalesTable,BuyersTable"})
    for stack in (by_tag, named):
        holders = [r for r in stack.of_type("AWS::IAM::Role") if "dynamodb:UpdateContinuousBackups" in stack.grants(r)]
        assert holders == ["SnapshotFunctionRole", "RestoreFunctionRole"]
    assert by_tag.grants("SnapshotFunctionRole")["dynamodb:UpdateContinuousBackups"] == [
        "arn:aws:dynamodb:us-east-1:123456789012:table/*"
    ]
    (statement,) = named.statements_with("SnapshotFunctionRole", "dynamodb:UpdateContinuousBackups")
    assert as_list(statement["Action"]) == ["dynamodb:UpdateContinuousBackups"]
    assert table_names(as_list(statement["Resource"])) == ["SalesTable", "BuyersTable"]
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}


def test_each_function_gets_only_its_own_environment():
    assert "Environment" not in yaml_parse(TEMPLATE.read_text())["Globals"]["Function"]
    common = {"BACKSTOP_CATALOG_TABLE", "BACKSTOP_TOPIC_ARN", "BACKSTOP_METRICS_NAMESPACE"}
    own = {
        "SnapshotFunction": {"BACKSTOP_ENABLE_PITR", "BACKSTOP_ANOMALY_THRESHOLD"},
        "RetentionFunction": {
            "BACKSTOP_RETENTION_POLICY",
            # Retention prunes the exports too.
            "BACKSTOP_EXPORT_BUCKET",
            "BACKSTOP_EXPORT_PREFIX",
            "BACKSTOP_EXPORT_RETENTION_POLICY",
        },
        # BACKSTOP_EXPORT_SEGMENTS and BACKSTOP_EXPORT_NATIVE_THRESHOLD only when set.
        "ExportFunction": {
            "BACKSTOP_EXPORT_BUCKET",
            "BACKSTOP_EXPORT_PREFIX",
            "BACKSTOP_EXPORT_KMS_KEY",
            "BACKSTOP_EXPORT_MODE",
            "BACKSTOP_EXPORT_FULL_EVERY",
            "BACKSTOP_BACKFILL_WINDOW",
            "BACKSTOP_EXPORT_FAN_OUT",
            "BACKSTOP_ANOMALY_THRESHOLD",
        },
        "ValidateFunction": {
            "BACKSTOP_EXPORT_BUCKET",
            "BACKSTOP_EXPORT_PREFIX",
            "BACKSTOP_EXPORT_KMS_KEY",
            "BACKSTOP_BACKUP_MAX_AGE",
            "BACKSTOP_EXPORT_MAX_AGE",
            "BACKSTOP_PITR_MAX_LAG",
            "BACKSTOP_DRILL_EVERY",
            "BACKSTOP_DRILLS_PER_RUN",
            "BACKSTOP_DRILL_TABLE_PREFIX",
        },
    }
    # BACKSTOP_BUCKETS / _PATTERN / _TAG and BACKSTOP_REPLICA_* only when set (tested below).
    bucket = {
        "BACKSTOP_BUCKET_BACKUP_BUCKET",
        "BACKSTOP_BUCKET_BACKUP_PREFIX",
        "BACKSTOP_BUCKET_KMS_KEY",
        "BACKSTOP_BUCKET_RETENTION_POLICY",
        "BACKSTOP_BUCKET_ENFORCE_GUARDS",
        "BACKSTOP_BACKFILL_WINDOW",
    }
    selections = (({}, "BACKSTOP_TABLE_TAG"), ({"TableNames": "SalesTable,BuyersTable"}, "BACKSTOP_TABLES"))
    for params, selection in selections:
        stack = Stack(params)
        for fn in FUNCTIONS:
            env = stack.props(fn)["Environment"]["Variables"]
            if fn == "BucketFunction":
                # Buckets, not tables: no table selection.
                assert set(env) == common | bucket, (params, sorted(env))
                continue
            if fn == "RestoreFunction":
                # Asked, not scheduled: no report topic, no metrics; the selection, the only
                # tables it restores from (and never into).
                assert set(env) == {"BACKSTOP_CATALOG_TABLE", "BACKSTOP_RESTORE_PREFIX", selection}, (params, env)
                assert env["BACKSTOP_RESTORE_PREFIX"] == "restored-"
                continue
            if fn == "SummaryFunction":
                # Reads the catalog, publishes to the topic: no selection, no metrics.
                assert env == {"BACKSTOP_CATALOG_TABLE": "<CatalogTable>", "BACKSTOP_TOPIC_ARN": "<Topic>"}, (params, env)
                continue
            assert set(env) == common | own[fn] | {selection}, (fn, params, sorted(env))
            assert env["BACKSTOP_CATALOG_TABLE"] == "<CatalogTable>"
            assert env["BACKSTOP_TOPIC_ARN"] == "<Topic>"
            if selection == "BACKSTOP_TABLES":
                assert env["BACKSTOP_TABLES"] == "SalesTable,BuyersTable"


def test_tls_roots_reach_every_function_only_when_set():
    for fn in FUNCTIONS:
        assert "BACKSTOP_TLS_ROOTS" not in Stack().props(fn)["Environment"]["Variables"], fn
    stack = Stack({"TlsRoots": "system"})
    for fn in FUNCTIONS:
        assert stack.props(fn)["Environment"]["Variables"]["BACKSTOP_TLS_ROOTS"] == "system", fn


def test_only_the_function_roles_may_write_the_catalog():
    stack = Stack()
    table = stack.props("CatalogTable")
    assert table["TableName"] == "backstop-catalog"
    assert table["DeletionProtectionEnabled"] is True
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": "<Key>"}

    def deny(stack):
        statements = stack.props("CatalogTable")["ResourcePolicy"]["PolicyDocument"]["Statement"]
        assert all(s["Effect"] == "Deny" for s in statements), statements
        ttl = [s for s in statements if s.get("Sid") == "NoTimeToLiveOnTheCatalog"]
        assert len(ttl) == 1 and ttl[0]["Action"] == "dynamodb:UpdateTimeToLive", ttl
        assert ttl[0]["Principal"] == "*" and "Condition" not in ttl[0]
        (s,) = [s for s in statements if s.get("Sid") != "NoTimeToLiveOnTheCatalog"]
        assert s["Principal"] == "*"
        assert set(s["Action"]) == CATALOG_WRITES
        assert s["Resource"] == CATALOG_ARN
        (operator, keys), = s["Condition"].items()
        # Exact ARNs, compared exactly: no name pattern lets another principal in.
        assert operator == "ArnNotEquals"
        assert list(keys) == ["aws:PrincipalArn"]
        return as_list(keys["aws:PrincipalArn"])

    assert deny(stack) == [
        "<SnapshotFunctionRole.Arn>",
        "<RetentionFunctionRole.Arn>",
        "<ExportFunctionRole.Arn>",
        "<ValidateFunctionRole.Arn>",
        "<RestoreFunctionRole.Arn>",
        "<BucketFunctionRole.Arn>",
        "<SummaryFunctionRole.Arn>",
    ]
    holds = "arn:aws:iam::123456789012:role/legal-hold,arn:aws:iam::123456789012:user/ops/alice"
    assert deny(Stack({"CatalogWriterArns": holds})) == [
        "<SnapshotFunctionRole.Arn>",
        "<RetentionFunctionRole.Arn>",
        "<ExportFunctionRole.Arn>",
        "<ValidateFunctionRole.Arn>",
        "<RestoreFunctionRole.Arn>",
        "<BucketFunctionRole.Arn>",
        "<SummaryFunctionRole.Arn>",
        "arn:aws:iam::123456789012:role/legal-hold",
        "arn:aws:iam::123456789012:user/ops/alice",
    ]
    pattern = yaml_parse(TEMPLATE.read_text())["Parameters"]["CatalogWriterArns"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, holds)
    assert not re.fullmatch(pattern, "arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/b")
    assert not re.fullmatch(pattern, "*")

    # The roles name the catalog by the same ARN, each with only the item actions it uses.
    catalog = {
        role: sorted(a for a, resources in stack.grants(role).items() if CATALOG_ARN in resources)
        for role in FUNCTION_ROLES
    }
    assert catalog == {
        "SnapshotFunctionRole": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        "RetentionFunctionRole": ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        "ExportFunctionRole": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        "ValidateFunctionRole": [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",
        ],
        "RestoreFunctionRole": [
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",
        ],
        # Its bucket locks (DeleteItem only on BUCKET#..., tested below), its slots' records
        # (a bucket's, by Query) and run records.
        "BucketFunctionRole": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        # Run records and every target's and drill's items read; its markers written (writes
        # only on SUMMARY#..., tested below).
        "SummaryFunctionRole": [
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",
        ],
    }
    retention = stack.grants("RetentionFunctionRole")
    assert "dynamodb:DescribeBackup" not in retention and "dynamodb:GetItem" not in retention


def test_catalog_writer_arns_are_exact_arns_and_refuse_wildcards():
    """A wildcard in CatalogWriterArns would let anyone who may create a role or user with a
    matching name forge or lift a legal hold: the parameter refuses * and ? anywhere, and its
    description says so."""
    param = yaml_parse(TEMPLATE.read_text())["Parameters"]["CatalogWriterArns"]
    pattern = param["AllowedPattern"]
    for good in (
        "",
        "arn:aws:iam::123456789012:role/legal-hold",
        "arn:aws:iam::123456789012:user/ops/alice,arn:aws-us-gov:iam::123456789012:role/a.b_c+d=e@f-g",
    ):
        assert re.fullmatch(pattern, good), good
    for bad in (
        "*",
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:iam::123456789012:role/ops-*",
        "arn:aws:iam::123456789012:role/ops-?",
        "arn:aws:iam::123456789012:user/ops/*/alice",
        "arn:aws:iam::123456789012:role/legal-hold,arn:aws:iam::123456789012:role/ops*",
        "arn:aws:iam::*:role/legal-hold",
        "arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/b",
        "arn:aws:iam::123456789012:group/legal",
    ):
        assert not re.fullmatch(pattern, bad), bad
    for text in (param["Description"], param["ConstraintDescription"]):
        assert "wildcard" in text and "*" in text and "?" in text, text
    assert "allowed" not in param["ConstraintDescription"]


# The catalog keys (partition key prefixes, dynamodb:LeadingKeys) each role may write, by action,
# as the code writes them: TARGET#<job>#<target> (catalog.rs, bucket/record.rs: updated only,
# never put, so that no put drops a record's legal hold), RUN#<job> (a run's record),
# EXPORT#<table>#<slot> (export/checkpoint.rs), DRILL#<table> (drill.rs), RESTORE#<table>
# (restore/request.rs), BUCKET#<bucket> (bucket/lock.rs), SUMMARY#<kind> (summary.rs).
CATALOG_KEYS = {
    "SnapshotFunctionRole": {"dynamodb:UpdateItem": ["TARGET#snapshot#*"], "dynamodb:PutItem": ["RUN#snapshot"]},
    # Marks the backups' and exports' records DELETED, after a conditional check of their hold.
    "RetentionFunctionRole": {"dynamodb:UpdateItem": ["TARGET#snapshot#*", "TARGET#export#*"], "dynamodb:PutItem": ["RUN#retention"]},
    "ExportFunctionRole": {"dynamodb:UpdateItem": ["TARGET#export#*", "EXPORT#*"], "dynamodb:PutItem": ["EXPORT#*", "RUN#export"]},
    # An export's verification, a native export it finalizes; its drills.
    "ValidateFunctionRole": {"dynamodb:UpdateItem": ["TARGET#export#*"], "dynamodb:PutItem": ["DRILL#*", "RUN#validate"]},
    "RestoreFunctionRole": {a: ["RESTORE#*"] for a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")},
    "BucketFunctionRole": {
        "dynamodb:PutItem": ["BUCKET#*", "RUN#bucket"],
        "dynamodb:UpdateItem": ["BUCKET#*", "TARGET#bucket#*"],
        "dynamodb:DeleteItem": ["BUCKET#*"],
    },
    "SummaryFunctionRole": {a: ["SUMMARY#*"] for a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")},
}
NEVER_CHANGE_LEGAL_HOLDS = {
    "Sid": "NeverChangeLegalHolds",
    "Effect": "Deny",
    "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"],
    "Resource": CATALOG_ARN,
    "Condition": {"ForAnyValue:StringEquals": {"dynamodb:Attributes": ["legal_hold"]}},
}


def test_each_role_writes_only_its_own_catalog_keys_and_only_retention_may_name_a_hold():
    """Each role's catalog writes carry dynamodb:LeadingKeys: the key prefixes it owns, per
    action (IAM-enforced per role in test_iam_enforced.py). Every role but retention's denies
    itself any write that names legal_hold, but the bucket function's: its prune checks a slot's
    hold in the same conditional write that marks the slot PRUNING, and dynamodb:Attributes
    counts an attribute a condition tests as one the request writes."""
    for params in PARAM_SETS:
        stack = Stack(params)
        for role in FUNCTION_ROLES:
            keys = {}
            for s in stack.statements(role):
                if s["Effect"] != "Allow" or CATALOG_ARN not in as_list(s["Resource"]):
                    continue
                writes = set(as_list(s["Action"])) & CATALOG_WRITES
                if not writes:
                    # Reads stay open: a job reads other jobs' records (retention a table's
                    # backups, validate its exports, summary every record).
                    assert "Condition" not in s, (role, s)
                    continue
                assert as_list(s["Resource"]) == [CATALOG_ARN], (role, s)
                (operator, condition), = s["Condition"].items()
                assert operator == "ForAllValues:StringLike" and list(condition) == ["dynamodb:LeadingKeys"], (role, s)
                for action in writes:
                    keys.setdefault(action, []).extend(condition["dynamodb:LeadingKeys"])
            assert keys == CATALOG_KEYS[role], (params, role, keys)
            holds = [d for d in stack.denies(role) if d.get("Sid") == "NeverChangeLegalHolds"]
            if role == "RetentionFunctionRole":
                assert not holds, (role, holds)
            else:
                assert holds == [NEVER_CHANGE_LEGAL_HOLDS], (params, role, holds)
        # No role may write a PartiQL statement or a batch into the catalog.
        for role in FUNCTION_ROLES:
            grants = stack.grants(role)
            for action in ("dynamodb:BatchWriteItem", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete"):
                assert CATALOG_ARN not in grants.get(action, []), (role, action)


def test_function_log_groups_have_retention_and_the_stack_key():
    assert yaml_parse(TEMPLATE.read_text())["Parameters"]["LogRetentionDays"]["Default"] == 90
    for days in ("90", "365"):
        stack = Stack({"LogRetentionDays": days})
        groups = stack.of_type("AWS::Logs::LogGroup")
        used = set()
        for fn in FUNCTIONS:
            ref = stack.props(fn)["LoggingConfig"]["LogGroup"]
            name = re.fullmatch(r"<(\w+)>", ref).group(1)
            used.add(name)
            group = groups[name]
            assert str(group["RetentionInDays"]) == days, (fn, group)
            assert group["KmsKeyId"] == "<Key.Arn>", (fn, group)
        assert len(used) == len(FUNCTIONS) == 7 and used == set(groups)


def test_key_policy_lets_services_use_the_key_only_under_conditions():
    stack = Stack()
    statements = stack.props("Key")["KeyPolicy"]["Statement"]
    services = {}
    for s in statements:
        principal = s["Principal"]
        if "AWS" in principal:
            assert principal == {"AWS": "arn:aws:iam::123456789012:root"}, s
            continue
        assert s.get("Condition"), f"service principal without a condition: {s}"
        for service in as_list(principal["Service"]):
            services[service] = s
    assert set(services) == {"cloudwatch.amazonaws.com", "logs.us-east-1.amazonaws.com"}, sorted(services)
    assert services["logs.us-east-1.amazonaws.com"]["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:123456789012:log-group:*"}
    }
    alarms = services["cloudwatch.amazonaws.com"]["Condition"]
    assert alarms["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert alarms["ArnLike"] == {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"}


def test_topic_policy_denies_requests_without_tls_and_lets_only_this_accounts_alarms_publish():
    stack = Stack()
    (policy,) = stack.of_type("AWS::SNS::TopicPolicy").values()
    assert policy["Topics"] == ["<Topic>"]
    statements = policy["PolicyDocument"]["Statement"]
    tls = [s for s in statements if s["Effect"] == "Deny"]
    assert len(tls) == 1
    assert tls[0]["Principal"] == "*"
    assert tls[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    denied = set(as_list(tls[0]["Action"]))
    assert {"sns:Publish", "sns:Subscribe", "sns:SetTopicAttributes", "sns:DeleteTopic"} <= denied
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "AlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": "<Topic>",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"},
            },
        }
    ]


def test_object_lock_sets_a_default_retention_when_enabled():
    off = Stack().props("ExportsBucket")
    assert "ObjectLockEnabled" not in off and "ObjectLockConfiguration" not in off
    on = Stack({"EnableObjectLock": "true"}).props("ExportsBucket")
    assert on["ObjectLockEnabled"] is True
    assert on["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": "30"}},
    }
    strict = Stack({"EnableObjectLock": "true", "ObjectLockMode": "COMPLIANCE", "ObjectLockDays": "365"})
    assert strict.props("ExportsBucket")["ObjectLockConfiguration"]["Rule"] == {
        "DefaultRetention": {"Mode": "COMPLIANCE", "Days": "365"}
    }


def test_roles_carry_only_allow_listed_managed_policies_and_no_wildcard_actions():
    for params in PARAM_SETS:
        stack = Stack(params)
        roles = stack.of_type("AWS::IAM::Role")
        # Every role in the stack is one of ours: no role generated behind our back (the bucket
        # schedule's only with a bucket selection).
        expected = set(FUNCTION_ROLES) | set(SCHEDULE_ROLES)
        if not stack.condition("HasBucketSelection"):
            expected.discard("BucketScheduleRole")
        assert set(roles) == expected, sorted(roles)
        for name, role in roles.items():
            managed = set(role.get("ManagedPolicyArns", []))
            assert managed <= ALLOWED_MANAGED_POLICIES, (name, managed)
            if name in SCHEDULE_ROLES:
                assert not managed, name
            for s in stack.statements(name):
                # NotResource only in a Deny (there it denies more; in an Allow it would grant
                # everything else).
                assert "NotAction" not in s, (name, s)
                assert "NotResource" not in s or s["Effect"] == "Deny", (name, s)
                for a in as_list(s["Action"]):
                    assert a != "*" and not a.endswith(":*"), (name, s)


def test_alarms_on_backstop_metrics_cannot_be_raised_or_hidden_by_a_duplicate_data_point():
    # PutMetricData has no idempotency token: a retry after a lost answer may send a data point
    # twice. Maximum (and Minimum) do not change when a value repeats; Sum, Average and
    # SampleCount do.
    res = yaml_parse(TEMPLATE.read_text())["Resources"]
    alarms = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    ours = {k: p for k, p in alarms.items() if p.get("Namespace") == "Backstop"}
    assert sorted(ours) == [
        "BackupAnomalyAlarm",
        "BackupDurationAlarm",
        "BackupFailureAlarm",
        "BackupFreshnessAlarm",
        "BucketBackupFailureAlarm",
        "ExportAnomalyAlarm",
        "ExportFailureAlarm",
        "ExportVerificationAlarm",
        "FreshnessViolationAlarm",
        "ReplicaFailureAlarm",
        "RestoreDrillAlarm",
        "RetentionFailureAlarm",
    ]
    for name, p in ours.items():
        assert p["Statistic"] in ("Maximum", "Minimum"), (name, p["Statistic"])


def test_exports_bucket_has_versioning_lifecycle_tiers_and_no_public_access():
    props = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = props["LifecycleConfiguration"]["Rules"][0]
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER", 90),
        ("DEEP_ARCHIVE", 365),
    ]
    # Retention is the only deleter: no lifecycle expiration of current exports (it would
    # delete what a policy or a legal hold keeps).
    assert not {"ExpirationInDays", "ExpirationDate", "Expiration"} & set(rule), rule
    # Exports are large multipart uploads: a part left by a failed upload goes after 7 days.
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
    }
    assert all(props["PublicAccessBlockConfiguration"].values())
    policy = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucketPolicy"]["Properties"]["PolicyDocument"]
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_exports_bucket_denies_requests_without_tls_and_is_made_only_without_export_bucket_name():
    stack = Stack()
    (statement,) = stack.props("ExportsBucketPolicy")["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == ["<ExportsBucket.Arn>", "<ExportsBucket.Arn>/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for name in ("ExportsBucket", "ExportsBucketPolicy"):
        assert stack.resources[name]["Condition"] == "CreateExportsBucket", name
    assert stack.condition("CreateExportsBucket")
    assert stack.resolve(stack.out["Outputs"]["ExportsBucketName"]["Value"]) == "<ExportsBucket>"

    named = Stack({"ExportBucketName": "corp-dynamo-exports"})
    assert not named.condition("CreateExportsBucket")
    assert named.resolve(named.out["Outputs"]["ExportsBucketName"]["Value"]) == "corp-dynamo-exports"
    for fn in ("ExportFunction", "RetentionFunction"):
        assert named.props(fn)["Environment"]["Variables"]["BACKSTOP_EXPORT_BUCKET"] == "corp-dynamo-exports", fn
    pattern = yaml_parse(TEMPLATE.read_text())["Parameters"]["ExportBucketName"]["AllowedPattern"]
    for good in ("", "corp-dynamo-exports", "a.b-c"):
        assert re.fullmatch(pattern, good), good
    for bad in ("Corp", "a*", "a/b", "-ab", "a"):
        assert not re.fullmatch(pattern, bad), bad


def test_export_prefix_parameter_cannot_widen_the_s3_grants():
    pattern = yaml_parse(TEMPLATE.read_text())["Parameters"]["ExportPrefix"]["AllowedPattern"]
    for good in ("backstop", "teams/orders", "a.b-c_D9"):
        assert re.fullmatch(pattern, good), good
    for bad in ("", "*", "a*", "a?", "/a", "a/", "a//b", "a b"):
        assert not re.fullmatch(pattern, bad), bad


EXPORT_ENV_CASES = [
    ({}, "<ExportsBucket>", "backstop"),
    (
        {"ExportBucketName": "corp-dynamo-exports", "ExportPrefix": "teams/orders"},
        "corp-dynamo-exports",
        "teams/orders",
    ),
]


def test_export_function_runs_weekly_with_its_own_settings():
    stack = Stack()
    props = stack.props("ExportFunction")
    assert props["FunctionName"] == "backstop-export"
    assert props["MemorySize"] == 1024 and props["Timeout"] == 900
    assert props["Architectures"] == ["arm64"] and props["Runtime"] == "provided.al2023"
    assert props["LoggingConfig"] == {"LogGroup": "<ExportLogGroup>"}
    assert stack.props("ExportLogGroup")["LogGroupName"] == "/aws/lambda/backstop-export"
    metadata = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportFunction"]["Metadata"]
    assert metadata["BuildMethod"] == "rust-cargolambda" and metadata["BuildProperties"] == {"Binary": "export"}
    # Lambda retries a failed invocation twice, then the dead-letter queue.
    configs = stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    (invoke_config,) = [c for c in configs if c["FunctionName"] == "<ExportFunction>"]
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == "<DeadLetterQueue.Arn>"

    (schedule,) = [s for s in stack.of_type("AWS::Scheduler::Schedule").values() if s["Name"] == "backstop-export"]
    assert schedule["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    target = schedule["Target"]
    assert target["Arn"] == "<ExportFunction.Arn>" and target["RoleArn"] == "<ExportScheduleRole.Arn>"
    assert json.loads(target["Input"]) == {"slot": "<aws.scheduler.scheduled-time>"}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert target["DeadLetterConfig"] == {"Arn": "<DeadLetterQueue.Arn>"}
    weekly = Stack({"ExportSchedule": "cron(30 1 ? * SAT *)"}).of_type("AWS::Scheduler::Schedule")
    assert "cron(30 1 ? * SAT *)" in [s["ScheduleExpression"] for s in weekly.values()]

    for params, bucket, prefix in EXPORT_ENV_CASES:
        env = Stack(params).props("ExportFunction")["Environment"]["Variables"]
        assert env["BACKSTOP_EXPORT_BUCKET"] == bucket, params
        assert env["BACKSTOP_EXPORT_PREFIX"] == prefix, params
        assert env["BACKSTOP_EXPORT_KMS_KEY"] == "<Key.Arn>"
        assert env["BACKSTOP_EXPORT_MODE"] == "auto"
        assert env["BACKSTOP_EXPORT_FULL_EVERY"] == "7d"
        assert env["BACKSTOP_EXPORT_FAN_OUT"] == "1"
        assert "BACKSTOP_EXPORT_SEGMENTS" not in env and "BACKSTOP_EXPORT_NATIVE_THRESHOLD" not in env
        retention = Stack(params).props("RetentionFunction")["Environment"]["Variables"]
        assert retention["BACKSTOP_EXPORT_BUCKET"] == bucket and retention["BACKSTOP_EXPORT_PREFIX"] == prefix
        assert retention["BACKSTOP_EXPORT_RETENTION_POLICY"] == "keep_weekly=13,keep_monthly=12,keep_yearly=7"
        assert not {k for k in retention if k.startswith("BACKSTOP_EXPORT_")} - {
            "BACKSTOP_EXPORT_BUCKET",
            "BACKSTOP_EXPORT_PREFIX",
            "BACKSTOP_EXPORT_RETENTION_POLICY",
        }, retention

    tuned = Stack(
        {
            "ExportMode": "logical",
            "ExportFullEvery": "14d",
            "ExportSegments": "8",
            "ExportFanOut": "4",
            "ExportNativeThreshold": "1073741824",
        }
    )
    props = tuned.props("ExportFunction")
    env = props["Environment"]["Variables"]
    assert env["BACKSTOP_EXPORT_MODE"] == "logical"
    assert env["BACKSTOP_EXPORT_FULL_EVERY"] == "14d"
    assert env["BACKSTOP_EXPORT_SEGMENTS"] == "8"
    assert env["BACKSTOP_EXPORT_FAN_OUT"] == "4"
    assert env["BACKSTOP_EXPORT_NATIVE_THRESHOLD"] == "1073741824"
    # One run at a time, or as many invocations as the fan-out asks for.
    assert str(props["ReservedConcurrentExecutions"]) == "4"
    assert str(Stack().props("ExportFunction")["ReservedConcurrentExecutions"]) == "1"
    params = yaml_parse(TEMPLATE.read_text())["Parameters"]
    assert params["ExportMode"]["AllowedValues"] == ["native", "logical", "auto"]
    # The ranges the export job accepts (shared/src/settings.rs).
    for good in ("0d", "7d", "35d"):
        assert re.fullmatch(params["ExportFullEvery"]["AllowedPattern"], good), good
    for bad in ("36d", "7", "-1d", "1w"):
        assert not re.fullmatch(params["ExportFullEvery"]["AllowedPattern"], bad), bad
    for good in ("", "1", "64", "1000"):
        assert re.fullmatch(params["ExportSegments"]["AllowedPattern"], good), good
    for bad in ("0", "1001", "-1"):
        assert not re.fullmatch(params["ExportSegments"]["AllowedPattern"], bad), bad
    assert (params["ExportFanOut"]["MinValue"], params["ExportFanOut"]["MaxValue"]) == (1, 20)
    assert not re.fullmatch(params["ExportNativeThreshold"]["AllowedPattern"], "0")


def test_export_role_invokes_only_itself_and_deletes_nothing():
    for params in PARAM_SETS:
        stack = Stack(params)
        grants = stack.grants("ExportFunctionRole")
        # It goes on with a long export in a new invocation of itself, by its exact ARN.
        assert grants["lambda:InvokeFunction"] == [EXPORT_FUNCTION_ARN], params
        assert not [a for a in grants if a.startswith("lambda:") and a != "lambda:InvokeFunction"], params
        # Nothing that deletes, tables, backups, items or objects.
        for action in ("dynamodb:DeleteBackup", "dynamodb:DeleteTable", "dynamodb:DeleteItem", "s3:DeleteObject"):
            assert action not in grants, (params, action)
        assert not [a for a in grants if "Delete" in a], params
        # Only the export function's own role and its schedule role may invoke it.
        for role in stack.of_type("AWS::IAM::Role"):
            invokes = stack.grants(role).get("lambda:InvokeFunction", [])
            if role == "ExportFunctionRole":
                continue
            assert EXPORT_FUNCTION_ARN not in invokes, role
            if "<ExportFunction.Arn>" in invokes:
                assert role == "ExportScheduleRole", role
    # The stack name is part of the ARN.
    other = Stack(stack_name="backstop-eu")
    assert other.grants("ExportFunctionRole")["lambda:InvokeFunction"] == [
        "arn:aws:lambda:us-east-1:123456789012:function:backstop-eu-export"
    ]
    assert other.props("ExportFunction")["FunctionName"] == "backstop-eu-export"


def test_the_export_may_invoke_itself_in_a_loop_and_the_others_may_not():
    stack = Stack({})
    functions = stack.of_type("AWS::Lambda::Function")
    export = [f for f in functions if f.startswith(("ExportFunction", "RestoreFunction", "BucketFunction"))]
    assert len(export) == 3, functions
    for name in functions:
        props = stack.resources[name]["Properties"]
        assert props.get("RecursiveLoop") == ("Allow" if name in export else None), name


def test_export_role_reads_and_writes_only_under_the_export_prefix():
    for params, bucket, prefix in EXPORT_ENV_CASES:
        stack = Stack(params)
        grants = stack.grants("ExportFunctionRole")
        objects = f"arn:aws:s3:::{bucket}/{prefix}/*"
        s3 = {a: r for a, r in grants.items() if a.startswith("s3:")}
        assert s3 == {
            "s3:PutObject": [objects],
            "s3:PutObjectAcl": [objects],
            "s3:GetObject": [objects],
            "s3:AbortMultipartUpload": [objects],
            "s3:ListBucket": [f"arn:aws:s3:::{bucket}"],
        }, params
        (listing,) = stack.statements_with("ExportFunctionRole", "s3:ListBucket")
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}, params
        assert grants["kms:GenerateDataKey"] == ["<Key.Arn>"] and grants["kms:Decrypt"] == ["<Key.Arn>"]
        assert grants["dynamodb:DescribeExport"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/*/export/*"]
        assert grants["sns:Publish"] == ["<Topic>"]
        (metrics,) = stack.statements_with("ExportFunctionRole", "cloudwatch:PutMetricData")
        assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Backstop"}}


def test_export_scans_and_exports_only_the_named_tables():
    named = Stack({"TableNames": "SalesTable,BuyersTable"})
    for action in ("dynamodb:Scan", "dynamodb:ExportTableToPointInTime"):
        (statement,) = named.statements_with("ExportFunctionRole", action)
        assert table_names(as_list(statement["Resource"])) == ["SalesTable", "BuyersTable"], action
        assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    (statement,) = named.statements_with("ExportFunctionRole", "dynamodb:DescribeExport")
    assert table_names(as_list(statement["Resource"]), "/export/*") == ["SalesTable", "BuyersTable"]
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    by_tag = Stack().grants("ExportFunctionRole")
    assert by_tag["dynamodb:Scan"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/*"]
    assert by_tag["dynamodb:ExportTableToPointInTime"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/*"]
    # No other role reads items or exports, but validate its drill tables and the catalog.
    for role in named.of_type("AWS::IAM::Role"):
        grants = named.grants(role)
        if role == "ValidateFunctionRole":
            assert grants["dynamodb:Scan"] == [
                "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-drill-*",
                "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-catalog",
            ]
            # A drill's export of its backup's moment: the named tables only.
            (statement,) = named.statements_with(role, "dynamodb:ExportTableToPointInTime")
            assert table_names(as_list(statement["Resource"])) == ["SalesTable", "BuyersTable"]
        elif role == "RestoreFunctionRole":
            # The tables it restored, read back to compare.
            assert grants["dynamodb:Scan"] == [
                "arn:aws:dynamodb:us-east-1:123456789012:table/restored-*",
                "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-catalog",
            ]
            assert "dynamodb:ExportTableToPointInTime" not in grants
        elif role == "SummaryFunctionRole":
            # The catalog only (every target's and drill's items), never a backed-up table.
            assert grants["dynamodb:Scan"] == [CATALOG_ARN]
            assert "dynamodb:ExportTableToPointInTime" not in grants
        elif role != "ExportFunctionRole":
            assert "dynamodb:Scan" not in grants and "dynamodb:ExportTableToPointInTime" not in grants, role


def test_retention_may_delete_objects_only_under_the_export_prefix():
    for params, bucket, prefix in EXPORT_ENV_CASES:
        stack = Stack(params)
        grants = stack.grants("RetentionFunctionRole")
        objects = f"arn:aws:s3:::{bucket}/{prefix}/*"
        s3 = {a: r for a, r in grants.items() if a.startswith("s3:")}
        assert s3 == {
            "s3:DeleteObject": [objects],
            "s3:ListBucket": [f"arn:aws:s3:::{bucket}"],
        }, params
        (listing,) = stack.statements_with("RetentionFunctionRole", "s3:ListBucket")
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}, params
        # No other role deletes objects at all, but the bucket function in its own backup
        # bucket (tested with it).
        for role in stack.of_type("AWS::IAM::Role"):
            if role == "BucketFunctionRole":
                deletes = {a: r for a, r in stack.grants(role).items() if a.startswith("s3:Delete")}
                assert deletes == {"s3:DeleteObject": ["<BucketBackupsBucket.Arn>/buckets/*"]}, deletes
            elif role != "RetentionFunctionRole":
                assert not [a for a in stack.grants(role) if a.startswith("s3:Delete")], role


def test_template_deploys_to_moto_cloudformation(moto_endpoint):
    s3 = client("s3", moto_endpoint)
    s3.create_bucket(Bucket="backstop-artifacts")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    for key in ("snapshot.zip", "retention.zip", "export.zip", "validate.zip", "restore.zip", "bucket.zip", "summary.zip"):
        s3.put_object(Bucket="backstop-artifacts", Key=key, Body=buf.getvalue())
    out = translated(
        {
            "SnapshotFunction": "s3://backstop-artifacts/snapshot.zip",
            "RetentionFunction": "s3://backstop-artifacts/retention.zip",
            "ExportFunction": "s3://backstop-artifacts/export.zip",
            "ValidateFunction": "s3://backstop-artifacts/validate.zip",
            "RestoreFunction": "s3://backstop-artifacts/restore.zip",
            "BucketFunction": "s3://backstop-artifacts/bucket.zip",
            "SummaryFunction": "s3://backstop-artifacts/summary.zip",
        }
    )
    for fn in FUNCTIONS:
        assert out["Resources"][fn]["Properties"]["Architectures"] == ["arm64"]
    left_out = sorted(k for k, v in out["Resources"].items() if v["Type"] in NOT_IN_MOTO)
    out["Resources"] = {k: v for k, v in out["Resources"].items() if v["Type"] not in NOT_IN_MOTO}
    expected_left_out = {
        "BackupFailureAlarm",
        "SnapshotFunctionDaily",
        "ExportFunctionWeekly",
        "BucketFunctionDaily",
        "SummaryFunctionDaily",
        "SummaryFunctionMonthly",
        "BucketBackupsBucketPolicy",
        "TopicPolicy",
    }
    assert expected_left_out <= set(left_out), left_out

    cfn = client("cloudformation", moto_endpoint)
    # A bucket list and a replica: moto's CloudFormation evaluates the conditions and the
    # Split/Join that turn BucketNames into the role's resource ARNs.
    parameters = {
        "AlarmEmail": "ops@example.com",
        "BucketNames": "app-uploads,app-media",
        "ReplicaBucketName": "dr-bucket-backups",
        "ReplicaRegion": "us-west-2",
    }
    cfn.create_stack(
        StackName="backstop",
        TemplateBody=json.dumps(out),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName="backstop")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="backstop")["StackResources"]
    }

    # The catalog table, named after the stack, with its key schema. (moto's CloudFormation
    # ignores the table's resource policy; it is checked on the translated template.)
    assert outputs["CatalogTableName"] == "backstop-catalog"
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
    own = {
        "SnapshotFunctionName": "BACKSTOP_ENABLE_PITR",
        "RetentionFunctionName": "BACKSTOP_RETENTION_POLICY",
        "ExportFunctionName": "BACKSTOP_EXPORT_MODE",
    }
    for name in ("SnapshotFunctionName", "RetentionFunctionName", "ExportFunctionName"):
        conf = lam.get_function_configuration(FunctionName=outputs[name])
        assert conf["Runtime"] == "provided.al2023", conf
        env = conf["Environment"]["Variables"]
        assert env["BACKSTOP_CATALOG_TABLE"] == outputs["CatalogTableName"]
        assert env["BACKSTOP_TOPIC_ARN"] == outputs["NotificationTopicArn"]
        assert env["BACKSTOP_TABLE_TAG"] == "backup:plan=daily"
        # Each function gets only its own settings.
        assert own[name] in env and not (set(own.values()) - {own[name]}) & set(env), env
        if name != "SnapshotFunctionName":
            assert env["BACKSTOP_EXPORT_BUCKET"] == bucket and env["BACKSTOP_EXPORT_PREFIX"] == "backstop", env
    # The export function by its fixed name, the one its role may invoke.
    assert outputs["ExportFunctionName"] == "backstop-export"
    # The bucket function by its fixed name (it invokes itself too), with its own settings.
    assert outputs["BucketFunctionName"] == "backstop-bucket"
    backups = outputs["BucketBackupsBucketName"]
    rule = s3.get_bucket_encryption(Bucket=backups)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    conf = lam.get_function_configuration(FunctionName=outputs["BucketFunctionName"])
    assert conf["Runtime"] == "provided.al2023", conf
    env = conf["Environment"]["Variables"]
    assert env == {
        "BACKSTOP_CATALOG_TABLE": outputs["CatalogTableName"],
        "BACKSTOP_TOPIC_ARN": outputs["NotificationTopicArn"],
        "BACKSTOP_METRICS_NAMESPACE": "Backstop",
        "BACKSTOP_BUCKETS": "app-uploads,app-media",
        "BACKSTOP_BUCKET_BACKUP_BUCKET": backups,
        "BACKSTOP_BUCKET_BACKUP_PREFIX": "buckets",
        "BACKSTOP_BUCKET_KMS_KEY": env["BACKSTOP_BUCKET_KMS_KEY"],
        "BACKSTOP_BUCKET_RETENTION_POLICY": "keep_daily=30,keep_weekly=12,keep_monthly=12,keep_yearly=7",
        "BACKSTOP_BUCKET_ENFORCE_GUARDS": "false",
        "BACKSTOP_BACKFILL_WINDOW": "26h",
        "BACKSTOP_REPLICA_BUCKET": "dr-bucket-backups",
        "BACKSTOP_REPLICA_REGION": "us-west-2",
    }, env
    assert env["BACKSTOP_BUCKET_KMS_KEY"].startswith("arn:aws:kms:us-east-1:123456789012:key/"), env
    # The summary function: the catalog and the topic, nothing else.
    conf = lam.get_function_configuration(FunctionName=outputs["SummaryFunctionName"])
    assert conf["Runtime"] == "provided.al2023", conf
    assert conf["Environment"]["Variables"] == {
        "BACKSTOP_CATALOG_TABLE": outputs["CatalogTableName"],
        "BACKSTOP_TOPIC_ARN": outputs["NotificationTopicArn"],
    }, conf["Environment"]
    assert conf["MemorySize"] == 512 and conf["Timeout"] == 300, conf
    # One role per function and one per schedule.
    iam = client("iam", moto_endpoint)
    for logical in FUNCTION_ROLES + SCHEDULE_ROLES:
        assert iam.get_role(RoleName=physical[logical])["Role"]["Arn"]
    # The bucket role's source ARNs, as CloudFormation made them from BucketNames: each bucket
    # and its objects, nothing else; writes only in the backup bucket and the replica.
    role = physical["BucketFunctionRole"]
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        # (boto3 parses AWS's URL-encoded JSON; moto's CloudFormation stores the document it
        # was given as a Python literal, which reaches boto3 as a string.)
        if isinstance(document, str):
            document = ast.literal_eval(document)
        # (moto leaves a None where a statement's Fn::If gave AWS::NoValue; CloudFormation
        # drops the element.)
        statements.extend(st for st in document["Statement"] if st is not None)
    by_sid = {st.get("Sid"): st for st in statements}
    assert by_sid["ReadSourceBuckets"]["Resource"] == ["arn:*:s3:::app-uploads", "arn:*:s3:::app-media"]
    assert by_sid["ReadSourceObjects"]["Resource"] == ["arn:*:s3:::app-uploads/*", "arn:*:s3:::app-media/*"]
    assert by_sid["WriteBucketBackups"]["Resource"] == f"arn:aws:s3:::{backups}/buckets/*"
    assert by_sid["WriteReplica"]["Resource"] == "arn:aws:s3:::dr-bucket-backups/buckets/*"
    assert by_sid["NoWritesOutsideTheBackupStores"]["NotResource"] == [
        f"arn:aws:s3:::{backups}/buckets/*",
        "arn:aws:s3:::dr-bucket-backups/buckets/*",
    ]
    assert "FindBuckets" not in by_sid and "EnforceSourceGuards" not in by_sid, sorted(by_sid)
    # A log group per function, with the retention parameter's default.
    groups = {g["logGroupName"]: g for g in client("logs", moto_endpoint).describe_log_groups()["logGroups"]}
    for name in (
        "/aws/lambda/backstop-snapshot",
        "/aws/lambda/backstop-retention",
        "/aws/lambda/backstop-export",
        "/aws/lambda/backstop-bucket",
        "/aws/lambda/backstop-summary",
    ):
        assert int(groups[name]["retentionInDays"]) == 90, groups.get(name)
    # The dead-letter queue and the key.
    assert client("sqs", moto_endpoint).get_queue_url(QueueName=physical["DeadLetterQueue"].rsplit("/", 1)[-1])
    # (moto's DescribeKey fails on a key CloudFormation made with a policy document, so look for
    # the key through its alias.)
    kms = client("kms", moto_endpoint)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    key_ids = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    assert aliases.get("alias/backstop-backstop") in key_ids, (aliases, key_ids)


def test_validate_reads_exports_and_writes_only_the_drills_exports_which_expire():
    for params, bucket, prefix in EXPORT_ENV_CASES:
        stack = Stack(params)
        grants = stack.grants("ValidateFunctionRole")
        objects = f"arn:aws:s3:::{bucket}/{prefix}/*"
        drills = f"arn:aws:s3:::{bucket}/{prefix}/~drills/*"
        s3 = {a: r for a, r in grants.items() if a.startswith("s3:")}
        assert s3 == {
            "s3:GetObject": [objects],
            "s3:ListBucket": [f"arn:aws:s3:::{bucket}"],
            "s3:PutObject": [drills],
            "s3:PutObjectAcl": [drills],
            "s3:AbortMultipartUpload": [drills],
        }, params
        (listing,) = stack.statements_with("ValidateFunctionRole", "s3:ListBucket")
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}, params
        env = stack.props("ValidateFunction")["Environment"]["Variables"]
        assert env["BACKSTOP_EXPORT_PREFIX"] == prefix and env["BACKSTOP_EXPORT_KMS_KEY"] == "<Key.Arn>"
        assert env["BACKSTOP_DRILL_TABLE_PREFIX"] == "backstop-drill-"
    by_tag = Stack().grants("ValidateFunctionRole")
    assert by_tag["dynamodb:ExportTableToPointInTime"] == ["arn:aws:dynamodb:us-east-1:123456789012:table/*"]
    assert by_tag["dynamodb:RestoreTableFromBackup"] == [
        "arn:aws:dynamodb:us-east-1:123456789012:table/*/backup/*",
        "arn:aws:dynamodb:us-east-1:123456789012:table/backstop-drill-*",
    ]
    rules = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (drill_rule,) = [r for r in rules if r["Id"] == "drill-exports"]
    assert drill_rule["Prefix"] == {"Fn::Sub": "${ExportPrefix}/~drills/"} and drill_rule["ExpirationInDays"] == 7


def test_restore_role_creates_and_writes_only_prefixed_tables_and_only_its_catalog_records():
    for params in PARAM_SETS + [{"RestoreTablePrefix": "dr-copy-"}]:
        stack = Stack(params)
        prefix = params.get("RestoreTablePrefix", "restored-")
        target = f"arn:aws:dynamodb:us-east-1:123456789012:table/{prefix}*"
        grants = stack.grants("RestoreFunctionRole")
        assert stack.props("RestoreFunction")["Environment"]["Variables"]["BACKSTOP_RESTORE_PREFIX"] == prefix
        # Everything that creates or changes a table or its items names the prefix only (the
        # catalog's restore records aside, below).
        for action in (
            "dynamodb:CreateTable",
            "dynamodb:BatchWriteItem",
            "dynamodb:UpdateTable",
            "dynamodb:UpdateTimeToLive",
            "dynamodb:UpdateContinuousBackups",
            "dynamodb:TagResource",
        ):
            assert grants[action] == [target], (params, action, grants[action])
        for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            assert grants[action] == [target, CATALOG_ARN], (params, action)
        # The restore actions on the source side: the selection's (tested below); AWS also
        # requires the item actions on the target, which only the prefix has.
        assert target in grants["dynamodb:RestoreTableFromBackup"], params
        assert target in grants["dynamodb:RestoreTableToPointInTime"], params
        # Catalog writes only to partition keys RESTORE#...: no backup record, hold or run.
        (writes,) = [
            st for st in stack.statements_with("RestoreFunctionRole", "dynamodb:PutItem")
            if CATALOG_ARN in as_list(st["Resource"])
        ]
        assert writes["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RESTORE#*"]}}
        # No table, backup or object deleted; exports read only; it invokes only itself.
        assert not [a for a in grants if a.startswith("s3:") and a != "s3:GetObject"], grants
        for action in ("dynamodb:DeleteTable", "dynamodb:DeleteBackup", "dynamodb:CreateBackup", "s3:DeleteObject", "s3:PutObject"):
            assert action not in grants, (params, action)
        assert grants["lambda:InvokeFunction"] == ["arn:aws:lambda:us-east-1:123456789012:function:backstop-restore"]
        assert stack.props("RestoreFunction")["FunctionName"] == "backstop-restore"
        # Nobody else may invoke it: no schedule, no other role.
        for role in stack.of_type("AWS::IAM::Role"):
            if role != "RestoreFunctionRole":
                invokes = stack.grants(role).get("lambda:InvokeFunction", [])
                assert not [i for i in invokes if "restore" in i.lower()], role


def test_restore_role_restores_only_from_the_selected_tables():
    """The restore role's source rights follow the selection: with TableNames, only those
    tables' backups and point in time (per-table ARNs, the region pinned by a condition); by tag,
    point in time only from a table that carries TableTag (aws:ResourceTag/<key>, in a policy of
    its own, built as JSON text: a condition key cannot come from a parameter in YAML), and any
    table's backup (a backup has no tags IAM can test: only the code refuses one outside the
    selection). IAM-enforced in test_iam_enforced.py."""
    region = {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    for prefix in ("restored-", "dr-copy-"):
        named = Stack({"TableNames": "SalesTable,BuyersTable", "RestoreTablePrefix": prefix})
        (backups,) = [s for s in named.statements_with("RestoreFunctionRole", "dynamodb:RestoreTableFromBackup") if s.get("Sid") == "RestoreFromBackups"]
        assert as_list(backups["Action"]) == ["dynamodb:RestoreTableFromBackup"]
        assert table_names(as_list(backups["Resource"]), "/backup/*") == ["SalesTable", "BuyersTable"]
        assert backups["Condition"] == region
        (pitr,) = [s for s in named.statements_with("RestoreFunctionRole", "dynamodb:RestoreTableToPointInTime") if s.get("Sid") == "RestoreFromPointInTime"]
        assert as_list(pitr["Action"]) == ["dynamodb:RestoreTableToPointInTime"]
        assert table_names(as_list(pitr["Resource"])) == ["SalesTable", "BuyersTable"]
        assert pitr["Condition"] == region
        # Every other grant of a restore action is the target's (the prefix).
        for action in ("dynamodb:RestoreTableFromBackup", "dynamodb:RestoreTableToPointInTime"):
            others = [s for s in named.statements_with("RestoreFunctionRole", action) if s not in (backups, pitr)]
            assert [as_list(s["Resource"]) for s in others] == [[f"arn:aws:dynamodb:us-east-1:123456789012:table/{prefix}*"]], others
        assert not named.of_type("AWS::IAM::Policy")
    for params, key, value in (({}, "backup:plan", "daily"), ({"TableTag": "team:data=gold tier"}, "team:data", "gold tier")):
        by_tag = Stack(params)
        (backups,) = [s for s in by_tag.statements_with("RestoreFunctionRole", "dynamodb:RestoreTableFromBackup") if s.get("Sid") == "RestoreFromBackups"]
        assert backups["Resource"] == "arn:aws:dynamodb:us-east-1:123456789012:table/*/backup/*"
        assert "RestoreFromPointInTime" not in [s.get("Sid") for s in by_tag.statements("RestoreFunctionRole")]
        (policy,) = by_tag.of_type("AWS::IAM::Policy").values()
        assert policy["Roles"] == ["<RestoreFunctionRole>"]
        assert json.loads(policy["PolicyDocument"]) == {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RestoreFromPointInTimeOfTaggedTables",
                    "Effect": "Allow",
                    "Action": "dynamodb:RestoreTableToPointInTime",
                    "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/*",
                    "Condition": {"StringEquals": {f"aws:ResourceTag/{key}": value, "aws:RequestedRegion": "us-east-1"}},
                }
            ],
        }, policy
        env = by_tag.props("RestoreFunction")["Environment"]["Variables"]
        assert env["BACKSTOP_TABLE_TAG"] == f"{key}={value}" and "BACKSTOP_TABLES" not in env


def test_table_tag_is_a_plain_key_and_value_that_the_restore_policy_can_name():
    """TableTag goes into the restore role's by-tag policy as JSON text: the parameter admits
    only key=value of plain characters (no quote or backslash to break out of a JSON string, no
    second "=" that Fn::Split would cut the value at, no space at either end that the code would
    trim and IAM would not)."""
    pattern = yaml_parse(TEMPLATE.read_text())["Parameters"]["TableTag"]["AllowedPattern"]
    for good in ("backup:plan=daily", "team:data=gold tier", "a=b", "aws-backup/plan_1=+x@y.z", "k" * 128 + "=" + "v" * 256):
        assert re.fullmatch(pattern, good), good
    for bad in (
        "", "backup:plan", "backup:plan=", "=daily", "a=b=c", 'a="b', 'a"=b', "a=b\\", "a=b}", "a =b", "a= b", " a=b", "a=b ",
        "k" * 129 + "=v", "k=" + "v" * 257, "a=b\n",
    ):
        assert not re.fullmatch(pattern, bad), bad


def test_validate_tags_only_drill_tables_and_only_with_the_drill_tags():
    """A drill tags its table (backstop:drill=true, backstop:drill-of=<source>) and the sweep
    reads those tags before it deletes a table: TagResource and ListTagsOfResource on tables
    with the drill prefix, TagResource only with those two tag keys."""
    for params, prefix in (({}, "backstop-drill-"), ({"DrillTablePrefix": "dr-drill-", "TableNames": "SalesTable"}, "dr-drill-")):
        stack = Stack(params)
        drill = f"arn:aws:dynamodb:us-east-1:123456789012:table/{prefix}*"
        (tagging,) = stack.statements_with("ValidateFunctionRole", "dynamodb:TagResource")
        assert as_list(tagging["Action"]) == ["dynamodb:TagResource"]
        assert tagging["Resource"] == drill
        assert tagging["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["backstop:drill", "backstop:drill-of"]}}
        assert drill in stack.grants("ValidateFunctionRole")["dynamodb:ListTagsOfResource"]
        # No other role may tag a drill table, nor untag one.
        for role in stack.of_type("AWS::IAM::Role"):
            grants = stack.grants(role)
            assert drill not in grants.get("dynamodb:TagResource", []) or role == "ValidateFunctionRole", role
            assert "dynamodb:UntagResource" not in grants, role


# ---------- the bucket function (S3 bucket backups) ----------

BACKUP_OBJECTS = "<BucketBackupsBucket.Arn>/buckets/*"
REPLICA_KEY = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
REPLICA = {"ReplicaBucketName": "dr-bucket-backups", "ReplicaRegion": "us-west-2", "ReplicaKmsKeyArn": REPLICA_KEY}
# The source-side S3 actions the bucket job calls (besides the guards' two, below).
SOURCE_BUCKET_READS = {
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketTagging",
}
SOURCE_OBJECT_READS = {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"}
GUARDS = {"s3:PutBucketVersioning", "s3:PutLifecycleConfiguration"}
# Every selection the bucket function can have, and the cases that change its role.
BUCKET_PARAM_SETS = [
    {},
    BUCKET_SELECTED,
    {**BUCKET_SELECTED, "BucketEnforceGuards": "true"},
    {"BucketPattern": "prod-*"},
    {"BucketTag": "backup=daily", "BucketEnforceGuards": "true"},
    {**BUCKET_SELECTED, **REPLICA},
    {"BucketPattern": "prod-*", "ReplicaBucketName": "dr-bucket-backups", "BucketBackupPrefix": "backstop/buckets"},
]


def bucket_names(arns, suffix=""):
    """The bucket names in per-bucket ARNs (any partition: see the template)."""
    names = []
    for arn in arns:
        m = re.fullmatch(r"arn:(\*|aws):s3:::([a-z0-9][a-z0-9.-]+[a-z0-9])" + re.escape(suffix), arn)
        assert m, arn
        names.append(m.group(2))
    return names


def test_every_function_in_the_workspace_has_its_function_in_the_template():
    res = yaml_parse(TEMPLATE.read_text())["Resources"]
    binaries = {
        v["Metadata"]["BuildProperties"]["Binary"]: k
        for k, v in res.items()
        if v["Type"] == "AWS::Serverless::Function"
    }
    crates = sorted(d.name for d in (ROOT / "functions").iterdir() if (d / "Cargo.toml").is_file())
    assert sorted(binaries) == crates, (sorted(binaries), crates)
    assert set(binaries.values()) == set(FUNCTIONS)
    for name in binaries.values():
        assert res[name]["Metadata"]["BuildMethod"] == "rust-cargolambda", name
        assert res[name]["Properties"]["CodeUri"] == "../", name


def test_every_environment_variable_is_a_setting_the_code_reads():
    # The names in shared/src/settings.rs (pub const ENV_...: &str = "BACKSTOP_..."): a typo in
    # the template would leave a setting at its default without a word.
    source = (ROOT / "shared" / "src" / "settings.rs").read_text()
    known = set(re.findall(r'pub const ENV_\w+: &str =\s*"(BACKSTOP_\w+)"', source))
    assert {"BACKSTOP_BUCKET_BACKUP_BUCKET", "BACKSTOP_REPLICA_KMS_KEY"} <= known, sorted(known)
    for params in BUCKET_PARAM_SETS + PARAM_SETS:
        stack = Stack(params)
        for fn in FUNCTIONS:
            env = stack.props(fn)["Environment"]["Variables"]
            assert not set(env) - known, (fn, sorted(set(env) - known))


def test_bucket_function_runs_with_its_own_settings():
    stack = Stack()
    props = stack.props("BucketFunction")
    assert props["FunctionName"] == "backstop-bucket"
    assert props["MemorySize"] == 1024 and props["Timeout"] == 900
    assert props["Architectures"] == ["arm64"] and props["Runtime"] == "provided.al2023"
    # One run at a time, as the other functions (Globals).
    assert str(props["ReservedConcurrentExecutions"]) == "1"
    assert props["DeadLetterConfig"] == {"TargetArn": "<DeadLetterQueue.Arn>"}
    assert props["KmsKeyArn"] == "<Key.Arn>"
    assert props["LoggingConfig"] == {"LogGroup": "<BucketLogGroup>"}
    assert stack.props("BucketLogGroup")["LogGroupName"] == "/aws/lambda/backstop-bucket"
    metadata = yaml_parse(TEMPLATE.read_text())["Resources"]["BucketFunction"]["Metadata"]
    assert metadata["BuildMethod"] == "rust-cargolambda" and metadata["BuildProperties"] == {"Binary": "bucket"}
    configs = stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    (invoke_config,) = [c for c in configs if c["FunctionName"] == "<BucketFunction>"]
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == "<DeadLetterQueue.Arn>"
    assert stack.resolve(stack.out["Outputs"]["BucketFunctionName"]["Value"]) == "<BucketFunction>"
    assert stack.resolve(stack.out["Outputs"]["BucketBackupsBucketName"]["Value"]) == "<BucketBackupsBucket>"

    base = {
        "BACKSTOP_CATALOG_TABLE": "<CatalogTable>",
        "BACKSTOP_TOPIC_ARN": "<Topic>",
        "BACKSTOP_METRICS_NAMESPACE": "Backstop",
        "BACKSTOP_BUCKET_BACKUP_BUCKET": "<BucketBackupsBucket>",
        "BACKSTOP_BUCKET_BACKUP_PREFIX": "buckets",
        "BACKSTOP_BUCKET_KMS_KEY": "<Key.Arn>",
        "BACKSTOP_BUCKET_RETENTION_POLICY": "keep_daily=30,keep_weekly=12,keep_monthly=12,keep_yearly=7",
        "BACKSTOP_BUCKET_ENFORCE_GUARDS": "false",
        "BACKSTOP_BACKFILL_WINDOW": "26h",
    }
    # Exactly one selection reaches the function (it refuses two): the list, else the pattern,
    # else the tag.
    cases = [
        ({}, {}),
        (BUCKET_SELECTED, {"BACKSTOP_BUCKETS": "app-uploads,app-media"}),
        ({"BucketPattern": "prod-*"}, {"BACKSTOP_BUCKET_PATTERN": "prod-*"}),
        ({"BucketTag": "backup=daily"}, {"BACKSTOP_BUCKET_TAG": "backup=daily"}),
        ({**BUCKET_SELECTED, "BucketPattern": "prod-*", "BucketTag": "k"}, {"BACKSTOP_BUCKETS": "app-uploads,app-media"}),
        ({"BucketPattern": "prod-*", "BucketTag": "k"}, {"BACKSTOP_BUCKET_PATTERN": "prod-*"}),
        (
            {"BucketTag": "k", "ReplicaBucketName": "dr-bucket-backups"},
            {"BACKSTOP_BUCKET_TAG": "k", "BACKSTOP_REPLICA_BUCKET": "dr-bucket-backups"},
        ),
        (
            {**BUCKET_SELECTED, **REPLICA},
            {
                "BACKSTOP_BUCKETS": "app-uploads,app-media",
                "BACKSTOP_REPLICA_BUCKET": "dr-bucket-backups",
                "BACKSTOP_REPLICA_REGION": "us-west-2",
                "BACKSTOP_REPLICA_KMS_KEY": REPLICA_KEY,
            },
        ),
        # A replica's region and key mean nothing without the replica.
        ({"ReplicaRegion": "us-west-2", "ReplicaKmsKeyArn": REPLICA_KEY}, {}),
        (
            {
                "BucketBackupPrefix": "backstop/buckets",
                "BucketRetentionPolicy": "keep_daily=7",
                "BucketEnforceGuards": "true",
            },
            {
                "BACKSTOP_BUCKET_BACKUP_PREFIX": "backstop/buckets",
                "BACKSTOP_BUCKET_RETENTION_POLICY": "keep_daily=7",
                "BACKSTOP_BUCKET_ENFORCE_GUARDS": "true",
            },
        ),
    ]
    for params, own in cases:
        env = Stack(params).props("BucketFunction")["Environment"]["Variables"]
        assert env == {**base, **own}, (params, env)
    # Bucket settings are the bucket function's alone.
    for params in (BUCKET_SELECTED, {**BUCKET_SELECTED, **REPLICA}):
        stack = Stack(params)
        for fn in FUNCTIONS:
            if fn != "BucketFunction":
                env = stack.props(fn)["Environment"]["Variables"]
                assert not [k for k in env if k.startswith("BACKSTOP_BUCKET")], (fn, env)
                # The replica is the export's too (complete exports are replicated).
                replica = [k for k in env if k.startswith("BACKSTOP_REPLICA")]
                if fn == "ExportFunction" and "ReplicaBucketName" in params:
                    assert "BACKSTOP_REPLICA_BUCKET" in replica, (fn, env)
                else:
                    assert not replica, (fn, env)

    params = yaml_parse(TEMPLATE.read_text())["Parameters"]
    assert params["BucketEnforceGuards"]["AllowedValues"] == ["true", "false"]
    assert params["BucketEnforceGuards"]["Default"] == "false"
    assert params["BucketBackupPrefix"]["Default"] == "buckets"
    assert params["BucketSchedule"]["Default"] == "cron(0 4 * * ? *)"
    for name in ("BucketNames", "BucketPattern", "BucketTag", "ReplicaBucketName", "ReplicaRegion", "ReplicaKmsKeyArn"):
        assert params[name]["Default"] == "", name
    names = params["BucketNames"]["AllowedPattern"]
    for good in ("", "app-uploads", "app-uploads,app-media", "a.b-c", "x" * 63):
        assert re.fullmatch(names, good), good
    for bad in ("App", "a b", "app-uploads, app-media", "ab", "a,,b", "app,", "a*", "a/b", "-ab", "x" * 64):
        assert not re.fullmatch(names, bad), bad
    for bad in ("", "*", "a*", "/a", "a/", "a//b", "a b"):
        assert not re.fullmatch(params["BucketBackupPrefix"]["AllowedPattern"], bad), bad
    assert re.fullmatch(params["ReplicaKmsKeyArn"]["AllowedPattern"], REPLICA_KEY)
    for bad in ("alias/backups", "*", "arn:aws:kms:us-west-2:123456789012:key/*"):
        assert not re.fullmatch(params["ReplicaKmsKeyArn"]["AllowedPattern"], bad), bad
    for good in ("", "us-west-2", "eu-central-1", "us-gov-west-1"):
        assert re.fullmatch(params["ReplicaRegion"]["AllowedPattern"], good), good


def test_bucket_schedule_exists_only_with_a_bucket_selection():
    sam = Stack(BUCKET_SELECTED).of_type("AWS::Scheduler::Schedule")
    for params in ({}, {"ReplicaBucketName": "dr-bucket-backups"}, {"BucketEnforceGuards": "true"}):
        stack = Stack(params)
        assert not stack.condition("HasBucketSelection"), params
        assert "BucketFunctionDaily" not in stack.of_type("AWS::Scheduler::Schedule"), params
        assert "BucketScheduleRole" not in stack.of_type("AWS::IAM::Role"), params
        # Nothing else may invoke it then; it has no source bucket to read.
        for role in stack.of_type("AWS::IAM::Role"):
            invokes = stack.grants(role).get("lambda:InvokeFunction", [])
            assert "<BucketFunction.Arn>" not in invokes, role
            assert BUCKET_FUNCTION_ARN not in invokes or role == "BucketFunctionRole", role
    for params in (BUCKET_SELECTED, {"BucketPattern": "prod-*"}, {"BucketTag": "backup=daily"}):
        stack = Stack({**params, "BucketSchedule": "cron(15 1 * * ? *)"})
        schedule = stack.of_type("AWS::Scheduler::Schedule")["BucketFunctionDaily"]
        # The shape SAM gives the other functions' schedules.
        assert set(schedule) == set(sam["ExportFunctionWeekly"]), sorted(schedule)
        assert schedule["Name"] == "backstop-bucket"
        assert schedule["ScheduleExpression"] == "cron(15 1 * * ? *)"
        assert schedule["ScheduleExpressionTimezone"] == "UTC"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = schedule["Target"]
        assert target["Arn"] == "<BucketFunction.Arn>" and target["RoleArn"] == "<BucketScheduleRole.Arn>"
        assert json.loads(target["Input"]) == {"slot": "<aws.scheduler.scheduled-time>"}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
        assert target["DeadLetterConfig"] == {"Arn": "<DeadLetterQueue.Arn>"}
        assert stack.grants("BucketScheduleRole")["lambda:InvokeFunction"] == ["<BucketFunction.Arn>"]
        assert stack.resources["BucketScheduleRole"]["Condition"] == "HasBucketSelection"
    assert Stack(BUCKET_SELECTED).of_type("AWS::Scheduler::Schedule")["BucketFunctionDaily"]["ScheduleExpression"] == (
        "cron(0 4 * * ? *)"
    )


def test_bucket_role_never_writes_or_deletes_in_source_buckets():
    for params in BUCKET_PARAM_SETS:
        stack = Stack(params)
        grants = stack.grants("BucketFunctionRole")
        prefix = params.get("BucketBackupPrefix", "buckets")
        backup = f"<BucketBackupsBucket.Arn>/{prefix}/*"
        replica = f"arn:aws:s3:::dr-bucket-backups/{prefix}/*" if params.get("ReplicaBucketName") else None
        stores = [backup] + ([replica] if replica else [])
        s3 = {a: r for a, r in grants.items() if a.startswith("s3:")}
        # Every write, delete or tag change of objects: in the backup stores, under the prefix.
        for action, resources in s3.items():
            if action in GUARDS:
                continue
            if not action.startswith(("s3:Get", "s3:List")):
                assert set(resources) <= set(stores), (params, action, resources)
        assert s3["s3:PutObject"] == stores, params
        assert s3["s3:DeleteObject"] == stores, params
        for action in ("s3:PutObjectTagging", "s3:AbortMultipartUpload"):
            assert s3[action] == stores, (params, action)
        # Nothing that removes versions, changes bucket policies, ACLs or deletes buckets.
        for action in (
            "s3:DeleteObjectVersion",
            "s3:DeleteBucket",
            "s3:PutBucketPolicy",
            "s3:DeleteBucketPolicy",
            "s3:PutObjectAcl",
            "s3:PutBucketAcl",
            "s3:PutObjectRetention",
            "s3:BypassGovernanceRetention",
            "s3:PutObjectVersionTagging",
        ):
            assert action not in s3, (params, action)
        # ...and an explicit Deny of writes and deletes everywhere but the stores (whatever a
        # bucket policy or another identity policy grants), and of bucket policies and bucket
        # deletion everywhere.
        denies = [d for d in stack.denies("BucketFunctionRole") if d.get("Sid") not in OWN_DENIES]
        assert len(denies) == 2, denies
        writes, buckets = denies
        assert set(writes["Action"]) == {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"}
        assert writes["NotResource"] == stores and "Resource" not in writes and "Condition" not in writes, writes
        assert set(buckets["Action"]) >= {"s3:PutBucketPolicy", "s3:DeleteBucket"}
        assert buckets["Resource"] == "*" and "Condition" not in buckets, buckets
        # The listing of the stores.
        listed = ["<BucketBackupsBucket.Arn>"] + (["arn:aws:s3:::dr-bucket-backups"] if replica else [])
        assert [r for r in s3["s3:ListBucket"] if "*" not in r and "app-" not in r] == listed, params


def test_bucket_role_reads_only_the_named_source_buckets_or_every_bucket_for_a_pattern_or_tag():
    def source_statements(stack):
        return {
            s["Sid"]: s
            for s in stack.statements("BucketFunctionRole")
            if s.get("Sid") in ("ReadSourceBuckets", "ReadSourceObjects", "EnforceSourceGuards", "FindBuckets")
        }

    # No selection: no source bucket at all.
    assert source_statements(Stack()) == {}
    assert source_statements(Stack({"BucketEnforceGuards": "true"})) == {}

    for params in (BUCKET_SELECTED, {**BUCKET_SELECTED, "BucketTag": "k", "BucketEnforceGuards": "true"}):
        named = source_statements(Stack(params))
        assert set(as_list(named["ReadSourceBuckets"]["Action"])) == SOURCE_BUCKET_READS
        assert set(as_list(named["ReadSourceObjects"]["Action"])) == SOURCE_OBJECT_READS
        assert bucket_names(named["ReadSourceBuckets"]["Resource"]) == ["app-uploads", "app-media"]
        assert bucket_names(named["ReadSourceObjects"]["Resource"], "/*") == ["app-uploads", "app-media"]
        # No ListBuckets for a list; the guards only when asked.
        assert "FindBuckets" not in named, params
        if params.get("BucketEnforceGuards") == "true":
            assert set(as_list(named["EnforceSourceGuards"]["Action"])) == GUARDS
            assert bucket_names(named["EnforceSourceGuards"]["Resource"]) == ["app-uploads", "app-media"]
        else:
            assert "EnforceSourceGuards" not in named
    # One bucket: one ARN each (the Split/Join leaves no stray delimiter or "${...}").
    one = source_statements(Stack({"BucketNames": "app-uploads"}))
    assert one["ReadSourceBuckets"]["Resource"] == ["arn:*:s3:::app-uploads"]
    assert one["ReadSourceObjects"]["Resource"] == ["arn:*:s3:::app-uploads/*"]

    # A pattern or a tag: the buckets are known only at run time, so every bucket, read only.
    for params in ({"BucketPattern": "prod-*"}, {"BucketTag": "backup=daily", "BucketEnforceGuards": "true"}):
        listing = source_statements(Stack(params))
        assert as_list(listing["ReadSourceBuckets"]["Resource"]) == ["arn:aws:s3:::*"]
        assert as_list(listing["ReadSourceObjects"]["Resource"]) == ["arn:aws:s3:::*/*"]
        assert as_list(listing["FindBuckets"]["Action"]) == ["s3:ListAllMyBuckets"]
        assert listing["FindBuckets"]["Resource"] == "*"
        assert ("EnforceSourceGuards" in listing) == (params.get("BucketEnforceGuards") == "true")
    # No other role reads or lists buckets it does not own.
    for params in BUCKET_PARAM_SETS:
        stack = Stack(params)
        for role in stack.of_type("AWS::IAM::Role"):
            if role != "BucketFunctionRole":
                grants = stack.grants(role)
                # The export reads its own exports' tags to copy them to the replica.
                own = {"s3:GetObject", "s3:ListBucket"} | (
                    {"s3:GetObjectTagging"} if role == "ExportFunctionRole" else set()
                )
                assert not {a for a in grants if a in SOURCE_OBJECT_READS | SOURCE_BUCKET_READS | GUARDS} - own, role
                assert "s3:ListAllMyBuckets" not in grants, role
                assert not [r for a, rs in grants.items() if a.startswith("s3:") for r in rs if "s3:::*" in r], role
    for stack in (Stack(p) for p in BUCKET_PARAM_SETS):
        for s in stack.statements("BucketFunctionRole"):
            text = json.dumps(s)
            assert "${" not in text and ",arn:" not in text, s


def test_bucket_role_locks_in_the_catalog_invokes_only_itself_and_uses_only_its_keys():
    for params in BUCKET_PARAM_SETS:
        stack = Stack(params)
        grants = stack.grants("BucketFunctionRole")
        for action in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            assert grants[action] == [CATALOG_ARN], (params, action)
        assert not [a for a in grants if a.startswith("dynamodb:") and a not in (
            "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
        )], grants
        # Deletes only its locks (pk BUCKET#<bucket>): no run record, backup record or hold.
        (release,) = stack.statements_with("BucketFunctionRole", "dynamodb:DeleteItem")
        assert as_list(release["Action"]) == ["dynamodb:DeleteItem"]
        assert release["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BUCKET#*"]}}
        # A long backup goes on in a new invocation of itself, by its exact ARN.
        assert grants["lambda:InvokeFunction"] == [BUCKET_FUNCTION_ARN], params
        assert not [a for a in grants if a.startswith("lambda:") and a != "lambda:InvokeFunction"], params
        assert stack.props("BucketFunction")["RecursiveLoop"] == "Allow"
        for role in stack.of_type("AWS::IAM::Role"):
            invokes = stack.grants(role).get("lambda:InvokeFunction", [])
            if role not in ("BucketFunctionRole", "BucketScheduleRole"):
                assert BUCKET_FUNCTION_ARN not in invokes and "<BucketFunction.Arn>" not in invokes, role
        # The stack's key (backups SSE-KMS), and the replica's key only with a replica.
        keys = ["<Key.Arn>"] + ([REPLICA_KEY] if params.get("ReplicaBucketName") and params.get("ReplicaKmsKeyArn") else [])
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            assert sorted(grants[action]) == sorted(keys), (params, action)
        assert not [a for a in grants if a.startswith("kms:") and a not in ("kms:GenerateDataKey", "kms:Decrypt")]
        assert grants["sns:Publish"] == ["<Topic>"]
        # (SAM adds the same grant twice more, for DeadLetterQueue and EventInvokeConfig.)
        assert set(grants["sqs:SendMessage"]) == {"<DeadLetterQueue.Arn>"}
        (metrics,) = stack.statements_with("BucketFunctionRole", "cloudwatch:PutMetricData")
        assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Backstop"}}
    # The stack name is part of the ARN.
    other = Stack(stack_name="backstop-eu")
    assert other.grants("BucketFunctionRole")["lambda:InvokeFunction"] == [
        "arn:aws:lambda:us-east-1:123456789012:function:backstop-eu-bucket"
    ]
    assert other.props("BucketFunction")["FunctionName"] == "backstop-eu-bucket"


def test_bucket_backups_bucket_keeps_every_copy_until_prune_and_tiers_only_to_instant_retrieval():
    stack = Stack()
    props = stack.props("BucketBackupsBucket")
    raw = yaml_parse(TEMPLATE.read_text())["Resources"]["BucketBackupsBucket"]
    assert raw["DeletionPolicy"] == "Retain" and raw["UpdateReplacePolicy"] == "Retain"
    assert "Condition" not in raw
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "<Key.Arn>"},
            "BucketKeyEnabled": True,
        }
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    # No Object Lock (see the template), whatever EnableObjectLock says for the exports.
    for params in ({}, {"EnableObjectLock": "true"}):
        locked = Stack(params).props("BucketBackupsBucket")
        assert "ObjectLockEnabled" not in locked and "ObjectLockConfiguration" not in locked, params

    for params, prefix in (({}, "buckets/"), ({"BucketBackupPrefix": "backstop/buckets"}, "backstop/buckets/")):
        rules = Stack(params).props("BucketBackupsBucket")["LifecycleConfiguration"]["Rules"]
        for rule in rules:
            # Prune is the only deleter: no lifecycle expiration of current objects (a stored
            # copy is named by every later manifest whose object did not change).
            assert not {"ExpirationInDays", "ExpirationDate"} & set(rule), rule
            assert "Expiration" not in rule, rule
            # Only Glacier Instant Retrieval, which CopyObject reads (restores and replicas
            # copy server-side); GLACIER and DEEP_ARCHIVE would fail them.
            transitions = rule.get("Transitions", []) + ([rule["Transition"]] if "Transition" in rule else [])
            assert {t["StorageClass"] for t in transitions} <= {"GLACIER_IR"}, rule
            for t in rule.get("NoncurrentVersionTransitions", []):
                assert t["StorageClass"] == "GLACIER_IR", rule
        (tiers,) = rules
        assert tiers["Status"] == "Enabled"
        assert tiers["Prefix"] == prefix, tiers
        assert tiers["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
        # The prune's deletes leave noncurrent versions: gone after 30 days, as in the exports.
        assert tiers["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
        assert tiers["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    exports = yaml_parse(TEMPLATE.read_text())["Resources"]["ExportsBucket"]["Properties"]["LifecycleConfiguration"]
    assert exports["Rules"][0]["NoncurrentVersionExpiration"] == tiers["NoncurrentVersionExpiration"]

    (statement,) = stack.props("BucketBackupsBucketPolicy")["PolicyDocument"]["Statement"]
    assert stack.props("BucketBackupsBucketPolicy")["Bucket"] == "<BucketBackupsBucket>"
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == ["<BucketBackupsBucket.Arn>", "<BucketBackupsBucket.Arn>/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_alarms_go_to_the_topic():
    stack = Stack()
    alarms = stack.of_type("AWS::CloudWatch::Alarm")
    failure = alarms["BucketBackupFailureAlarm"]
    assert (failure["Namespace"], failure["MetricName"]) == ("Backstop", "BucketBackupFailure")
    assert failure["Dimensions"] == [{"Name": "Job", "Value": "bucket"}]
    errors = alarms["BucketErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "<BucketFunction>"}]
    # The replica's alarm only with a replica.
    assert "ReplicaFailureAlarm" not in alarms
    replica = Stack({**BUCKET_SELECTED, **REPLICA}).of_type("AWS::CloudWatch::Alarm")["ReplicaFailureAlarm"]
    assert (replica["Namespace"], replica["MetricName"]) == ("Backstop", "ReplicaFailure")
    assert replica["Dimensions"] == [{"Name": "Job", "Value": "bucket"}]
    for alarm in (failure, replica, errors):
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold", alarm
        assert alarm["TreatMissingData"] == "notBreaching"
    for name, alarm in Stack({**BUCKET_SELECTED, **REPLICA}).of_type("AWS::CloudWatch::Alarm").items():
        assert alarm["AlarmActions"] == ["<Topic>"], name
    body = json.loads(stack.props("Dashboard")["DashboardBody"])
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    assert ["Backstop", "BucketBackupSuccess", "Job", "bucket"] in metrics
    assert [".", "BucketBackupFailure", ".", "."] in metrics and [".", "ReplicaFailure", ".", "."] in metrics
    assert ["...", "<BucketFunction>"] in metrics


def test_export_role_writes_replicas_of_exports_only_under_the_export_prefix_and_deletes_nothing():
    plain = {s.get("Sid") for s in Stack().statements("ExportFunctionRole")}
    assert not {"WriteExportReplica", "ListExportReplica", "ReadExportTagsForReplicas"} & plain
    stack = Stack({**BUCKET_SELECTED, **REPLICA})
    named = {s.get("Sid"): s for s in stack.statements("ExportFunctionRole")}
    write = named["WriteExportReplica"]
    assert not [a for a in as_list(write["Action"]) if "Delete" in a], write
    assert stack.resolve(write["Resource"]).endswith(":s3:::" + REPLICA["ReplicaBucketName"] + "/backstop/*"), write
    assert named["ListExportReplica"]["Condition"]["StringLike"]["s3:prefix"]


# ---------- the summary function (daily and monthly summaries) ----------

SUMMARY_INPUTS = {
    "SummaryFunctionDaily": '{"summary": "daily", "slot": "<aws.scheduler.scheduled-time>"}',
    "SummaryFunctionMonthly": '{"summary": "monthly", "slot": "<aws.scheduler.scheduled-time>"}',
}


def test_summary_function_publishes_the_daily_and_monthly_summaries_on_its_own_schedules():
    stack = Stack()
    props = stack.props("SummaryFunction")
    metadata = yaml_parse(TEMPLATE.read_text())["Resources"]["SummaryFunction"]["Metadata"]
    assert metadata["BuildMethod"] == "rust-cargolambda" and metadata["BuildProperties"] == {"Binary": "summary"}
    assert [s["id"] for s in metadata["checkov"]["skip"]] == ["CKV_AWS_117"]
    assert props["MemorySize"] == 512 and props["Timeout"] == 300
    assert props["Architectures"] == ["arm64"] and props["Runtime"] == "provided.al2023"
    assert str(props["ReservedConcurrentExecutions"]) == "1"
    assert props["KmsKeyArn"] == "<Key.Arn>"
    assert props["DeadLetterConfig"] == {"TargetArn": "<DeadLetterQueue.Arn>"}
    assert "RecursiveLoop" not in props and "FunctionName" not in props
    assert props["Environment"]["Variables"] == {"BACKSTOP_CATALOG_TABLE": "<CatalogTable>", "BACKSTOP_TOPIC_ARN": "<Topic>"}
    assert props["LoggingConfig"] == {"LogGroup": "<SummaryLogGroup>"}
    group = stack.props("SummaryLogGroup")
    assert group["LogGroupName"] == "/aws/lambda/backstop-summary"
    assert group["KmsKeyId"] == "<Key.Arn>" and group["RetentionInDays"] == "90"
    configs = stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    (invoke_config,) = [c for c in configs if c["FunctionName"] == "<SummaryFunction>"]
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == "<DeadLetterQueue.Arn>"
    assert stack.resolve(stack.out["Outputs"]["SummaryFunctionName"]["Value"]) == "<SummaryFunction>"

    params = yaml_parse(TEMPLATE.read_text())["Parameters"]
    assert params["SummaryDailySchedule"]["Default"] == "cron(0 7 * * ? *)"
    assert params["SummaryMonthlySchedule"]["Default"] == "cron(0 7 1 * ? *)"
    defaults = {"SummaryFunctionDaily": "cron(0 7 * * ? *)", "SummaryFunctionMonthly": "cron(0 7 1 * ? *)"}
    tuned = {"SummaryDailySchedule": "cron(30 8 * * ? *)", "SummaryMonthlySchedule": "cron(0 9 2 * ? *)"}
    moved = {"SummaryFunctionDaily": "cron(30 8 * * ? *)", "SummaryFunctionMonthly": "cron(0 9 2 * ? *)"}
    validate = Stack().of_type("AWS::Scheduler::Schedule")["ValidateFunctionDaily"]
    for stack, expressions in ((Stack(), defaults), (Stack(tuned), moved)):
        schedules = stack.of_type("AWS::Scheduler::Schedule")
        for name, expression in expressions.items():
            schedule = schedules[name]
            assert set(schedule) == set(validate), (name, sorted(schedule))
            assert schedule["Name"] == "backstop-summary-" + name.removeprefix("SummaryFunction").lower()
            assert schedule["ScheduleExpression"] == expression
            assert schedule["ScheduleExpressionTimezone"] == "UTC"
            assert schedule["FlexibleTimeWindow"] == validate["FlexibleTimeWindow"]
            target = schedule["Target"]
            # The exact text the function parses (and the scheduled time is the period's slot).
            assert target["Input"] == SUMMARY_INPUTS[name], target["Input"]
            assert target["Arn"] == "<SummaryFunction.Arn>" and target["RoleArn"] == "<SummaryScheduleRole.Arn>"
            # Retries and the dead-letter queue as the validate schedule's.
            assert target["RetryPolicy"] == validate["Target"]["RetryPolicy"]
            assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
            assert target["DeadLetterConfig"] == {"Arn": "<DeadLetterQueue.Arn>"}
    assert Stack(stack_name="backstop-eu").props("SummaryLogGroup")["LogGroupName"] == "/aws/lambda/backstop-eu-summary"


def test_summary_role_reads_the_catalog_writes_only_its_markers_and_publishes():
    for params in PARAM_SETS:
        stack = Stack(params)
        grants = stack.grants("SummaryFunctionRole")
        assert grants.pop("sns:Publish") == ["<Topic>"], params
        # (SAM adds the same grant twice more, for DeadLetterQueue and EventInvokeConfig.)
        assert set(grants.pop("sqs:SendMessage")) == {"<DeadLetterQueue.Arn>"}, params
        assert grants == {
            "dynamodb:Query": [CATALOG_ARN],
            "dynamodb:Scan": [CATALOG_ARN],
            "dynamodb:GetItem": [CATALOG_ARN],
            "dynamodb:PutItem": [CATALOG_ARN],
            "dynamodb:UpdateItem": [CATALOG_ARN],
            "dynamodb:DeleteItem": [CATALOG_ARN],
            "kms:Decrypt": ["<Key.Arn>"],
            "kms:GenerateDataKey": ["<Key.Arn>"],
        }, (params, grants)
        # Writes only its markers (pk SUMMARY#daily, SUMMARY#monthly): no run record, backup
        # record or hold.
        for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
            (statement,) = stack.statements_with("SummaryFunctionRole", action)
            assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SUMMARY#*"]}}
        for action in ("dynamodb:Query", "dynamodb:Scan"):
            (statement,) = stack.statements_with("SummaryFunctionRole", action)
            assert "Condition" not in statement, statement
        assert [d["Sid"] for d in stack.denies("SummaryFunctionRole")] == ["NeverDeleteBackups", "NeverChangeLegalHolds"]
        assert set(stack.props("SummaryFunctionRole").get("ManagedPolicyArns", [])) <= ALLOWED_MANAGED_POLICIES
        # Only its schedule role invokes it.
        for role in stack.of_type("AWS::IAM::Role"):
            invokes = stack.grants(role).get("lambda:InvokeFunction", [])
            if role == "SummaryScheduleRole":
                assert invokes == ["<SummaryFunction.Arn>"], invokes
            else:
                assert not [i for i in invokes if "summary" in i.lower()], role


def test_anomaly_threshold_reaches_only_the_snapshot_and_the_export():
    param = yaml_parse(TEMPLATE.read_text())["Parameters"]["AnomalyThreshold"]
    assert param["Type"] == "Number"
    assert (param["Default"], param["MinValue"], param["MaxValue"]) == (20, 1, 99)
    assert "median" in param["Description"] and "BackupAnomaly" in param["Description"]
    for params, value in (({}, "20"), ({"AnomalyThreshold": "35"}, "35")):
        stack = Stack(params)
        for fn in FUNCTIONS:
            env = stack.props(fn)["Environment"]["Variables"]
            if fn in ("SnapshotFunction", "ExportFunction"):
                assert env["BACKSTOP_ANOMALY_THRESHOLD"] == value, (fn, params, env)
            else:
                assert "BACKSTOP_ANOMALY_THRESHOLD" not in env, (fn, env)


def test_anomaly_and_summary_alarms_go_to_the_topic():
    alarms = Stack().of_type("AWS::CloudWatch::Alarm")
    for name, job in (("BackupAnomalyAlarm", "snapshot"), ("ExportAnomalyAlarm", "export")):
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("Backstop", "BackupAnomaly"), name
        # The run's total (dimension Job alone), which the job sends whenever it checked a backup.
        assert alarm["Dimensions"] == [{"Name": "Job", "Value": job}], name
        assert alarm["Statistic"] == "Maximum" and alarm["Period"] == 86400, name
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold", name
        assert alarm["TreatMissingData"] == "notBreaching" and alarm["AlarmActions"] == ["<Topic>"], name
        assert "AnomalyThreshold" in alarm["AlarmDescription"], name
    assert alarms["BackupAnomalyAlarm"]["AlarmDescription"] == (
        "A Backstop backup's size or item count changed by more than AnomalyThreshold % from its baseline"
    )
    errors = alarms["SummaryErrorsAlarm"]
    validate = alarms["ValidateErrorsAlarm"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "<SummaryFunction>"}]
    for key in set(validate) - {"AlarmDescription", "Dimensions"}:
        assert errors[key] == validate[key], key
    # Every function has its errors alarm.
    watched = {a["Dimensions"][0]["Value"] for a in alarms.values() if a["Namespace"] == "AWS/Lambda"}
    assert watched == {f"<{fn}>" for fn in FUNCTIONS}, watched


# ---------- the dashboard ----------


def dashboard_body_text():
    """The dashboard's body as CloudFormation sends it: each ${...} replaced, ${!x} -> ${x}."""
    sub = yaml_parse(TEMPLATE.read_text())["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str), "DashboardBody is a !Sub of one string"
    names = re.findall(r"\$\{([^!}][^}]*)\}", sub)
    text = re.sub(r"\$\{([^!}][^}]*)\}", lambda m: "dummy-" + m.group(1).replace(":", "-"), sub)
    return names, text.replace("${!", "${")


def dashboard_body():
    return json.loads(dashboard_body_text()[1])


def test_dashboard_body_is_json_after_substitution_and_its_widgets_fit_the_grid():
    names, text = dashboard_body_text()
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        pytest.fail(f"DashboardBody is not JSON after !Sub: {e}\n{text[max(0, e.pos - 200):e.pos + 200]}")
    res = yaml_parse(TEMPLATE.read_text())["Resources"]
    # Every placeholder names a resource of the stack or a pseudo parameter.
    assert names and all(n in res or n in PSEUDO for n in names), sorted(set(names))
    widgets = body["widgets"]
    cells = set()
    for w in widgets:
        assert w["type"] == "metric", w
        assert 0 <= w["x"] and w["x"] + w["width"] <= 24, w
        props = w["properties"]
        assert props["region"] == "dummy-AWS--Region" and props["title"], props
        for x in range(w["x"], w["x"] + w["width"]):
            for y in range(w["y"], w["y"] + w["height"]):
                assert (x, y) not in cells, ("widgets overlap", props["title"])
                cells.add((x, y))
        for row in props["metrics"]:
            assert isinstance(row, list) and row, (props["title"], row)
    # The function-errors widget watches every function.
    (errors,) = [w for w in widgets if w["properties"]["title"] == "Function errors"]
    rows = errors["properties"]["metrics"]
    assert rows[0] == ["AWS/Lambda", "Errors", "FunctionName", "dummy-SnapshotFunction"]
    assert {r[-1] for r in rows} == {f"dummy-{fn}" for fn in FUNCTIONS}, rows
    # The 30-day success rates: single values, metric math over hidden success and failure sums.
    rates = {w["properties"]["title"]: w["properties"] for w in widgets if w["properties"].get("view") == "singleValue"}
    assert len(rates) == 3, sorted(rates)
    jobs = {
        ("BackupSuccess", "BackupFailure", "snapshot"),
        ("ExportSuccess", "ExportFailure", "export"),
        ("BucketBackupSuccess", "BucketBackupFailure", "bucket"),
    }
    seen = set()
    for title, props in rates.items():
        assert props["stat"] == "Sum" and props["period"] == 2592000, title
        (expression,), success, failure = props["metrics"]
        assert expression["expression"] == "100*m1/(m1+m2)" and expression["id"] == "e1", title
        assert success[:2] == ["Backstop", success[1]] and success[2] == "Job", title
        assert success[4] == {"id": "m1", "visible": False} and failure[4] == {"id": "m2", "visible": False}, title
        assert failure[0] == "." and failure[2:4] == [".", "."], title
        seen.add((success[1], failure[1], success[3]))
    assert seen == jobs, seen
    # The runbooks' per-table views, by SEARCH.
    searches = [
        r[0]["expression"] for w in widgets for r in w["properties"]["metrics"] if isinstance(r[0], dict) and "SEARCH" in r[0]["expression"]
    ]
    for schema, metric in (
        ("{Backstop,Job,Table}", "BackupSizeChangePercent"),
        ("{Backstop,Job,Table}", "PitrEnabled"),
        ("{Backstop,Bucket,Job}", "BucketVersioningEnabled"),
        ("{Backstop,Job,Table}", "RestoreDrillSeconds"),
        ("{Backstop,Bucket,Job,Replica}", "ReplicaLagSeconds"),
        ("{Backstop,Job,Replica,Table}", "ReplicaLagSeconds"),
        ("{Backstop,Job,Table}", "BackupAgeSeconds"),
        ("{Backstop,Job,Table}", "ExportAgeSeconds"),
        ("{Backstop,Job,Table}", "FreshnessViolation"),
    ):
        assert [s for s in searches if s.startswith(f"SEARCH('{schema} MetricName=\"{metric}\"'")], (schema, metric, searches)


def expanded_rows(rows):
    """Metric rows with "." (the previous row's value at that place) and "..." (the previous
    row's leading values) filled in; expression rows and rendering options left out."""
    out, prev = [], []
    for row in rows:
        if isinstance(row[0], dict):
            continue
        values = row[:-1] if isinstance(row[-1], dict) else list(row)
        if values[0] == "...":
            tail = values[1:]
            values = prev[: len(prev) - len(tail)] + tail
        else:
            values = [prev[i] if v == "." else v for i, v in enumerate(values)]
        out.append(values)
        prev = values
    return out


SEARCH_METRIC = re.compile(r"SEARCH\(\s*'\{([^,}]+)[^}]*\}([^']*)'")


def backstop_metric_names(resources, body):
    """{metric name: [where]} of every metric in namespace Backstop that the alarms and the
    dashboard use: alarm MetricName, dashboard metric rows, MetricName="..." in SEARCH."""
    used = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = res["Properties"]
        if props.get("Namespace") == "Backstop":
            used.setdefault(props["MetricName"], []).append(name)
        for m in props.get("Metrics", []):
            metric = m.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == "Backstop":
                used.setdefault(metric["MetricName"], []).append(name)
    for w in body["widgets"]:
        title = w["properties"].get("title", "")
        rows = w["properties"].get("metrics", [])
        for values in expanded_rows(rows):
            if values[0] == "Backstop":
                used.setdefault(values[1], []).append(title)
            else:
                assert values[0] in ("AWS/Lambda", "AWS/SQS"), (title, values)
        for row in rows:
            if isinstance(row[0], dict):
                for namespace, query in SEARCH_METRIC.findall(row[0].get("expression", "")):
                    names = re.findall(r'MetricName\s*=\s*"([^"]+)"', query)
                    assert names, ("a SEARCH without MetricName=", title, row)
                    if namespace == "Backstop":
                        for n in names:
                            used.setdefault(n, []).append(title)
    return used


def published_metric_names(source):
    """The metric names the code sends: pub const METRIC_<X>: &str = "<Name>" in notify.rs
    ({constant: name}), and the constants not used outside their definition and the tests."""
    consts = dict(re.findall(r'pub const (METRIC_\w+): &str = "(\w+)";', source))
    code = source.split("#[cfg(test)]", 1)[0]
    unsent = sorted(c for c in consts if len(re.findall(rf"\b{c}\b", code)) < 2)
    return consts, unsent


def test_dashboard_and_alarms_use_only_metrics_the_code_publishes():
    consts, unsent = published_metric_names((ROOT / "shared" / "src" / "notify.rs").read_text())
    published = set(consts.values())
    # The names after the reporting change; a rename in notify.rs must reach the template too.
    assert {"BackupSizeChangePercent", "BackupAnomaly", "PitrEnabled", "BucketVersioningEnabled"} <= published, sorted(published)
    assert len(published) == len(consts), "two constants name one metric"
    # A name defined but never sent is not published.
    assert not unsent, f"defined in notify.rs but never used there: {unsent}"

    used = backstop_metric_names(yaml_parse(TEMPLATE.read_text())["Resources"], dashboard_body())
    unknown = {n: w for n, w in used.items() if n not in published}
    assert not unknown, (
        f"metrics the template uses that no job publishes: {unknown}\n"
        f"used: {sorted(used)}\npublished: {sorted(published)}"
    )
    # It found the alarms', the rows' (after "." and "...") and the SEARCH expressions' names.
    assert {"BackupFailure", "ReplicaFailure", "BackupAnomaly"} <= set(used)
    assert {"RetentionDeleted", "BucketBackupFailure", "ExportFailure"} <= set(used)
    assert {"PitrEnabled", "BucketVersioningEnabled", "ReplicaLagSeconds", "ExportAgeSeconds"} <= set(used)
    assert "Errors" not in used and "ApproximateNumberOfMessagesVisible" not in used

    # ...and it would fail: a made-up name is not published, and is caught wherever it is used.
    assert "BackupSizeChangePct" not in published
    bogus_alarm = {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Namespace": "Backstop", "MetricName": "BackupSizeChangePct"}}
    bogus_body = {
        "widgets": [
            {"properties": {"title": "t", "metrics": [
                ["Backstop", "BackupSuccess", "Job", "snapshot"],
                [".", "BackupFailur", ".", "."],
                ["...", "export"],
                ["AWS/Lambda", "Errors", "FunctionName", "f"],
                ["...", "g"],
                [{"expression": "SEARCH('{Backstop,Job,Table} MetricName=\"PitrEnable\"', 'Minimum', 86400)", "id": "e1"}],
                [{"expression": "SEARCH('{AWS/Lambda,FunctionName} MetricName=\"Throttles\"', 'Sum', 300)", "id": "e2"}],
            ]}}
        ]
    }
    found = backstop_metric_names({"Bogus": bogus_alarm}, bogus_body)
    assert set(found) == {"BackupSizeChangePct", "BackupSuccess", "BackupFailur", "PitrEnable"}, found
    assert set(found) - published == {"BackupSizeChangePct", "BackupFailur", "PitrEnable"}
    assert expanded_rows(bogus_body["widgets"][0]["properties"]["metrics"])[2] == ["Backstop", "BackupFailur", "Job", "export"]
    # A constant defined and never sent (or only in the tests) is reported.
    fake = (
        'pub const METRIC_SENT: &str = "Sent";\npub const METRIC_NOT_SENT: &str = "NotSent";\n'
        'pub const METRIC_TESTED: &str = "Tested";\nfn f() { m.total(METRIC_SENT, 1.0) }\n'
        "#[cfg(test)]\nmod tests { fn t() { find(METRIC_TESTED); find(METRIC_NOT_SENT_TOO) } }\n"
    )
    assert published_metric_names(fake) == (
        {"METRIC_SENT": "Sent", "METRIC_NOT_SENT": "NotSent", "METRIC_TESTED": "Tested"},
        ["METRIC_NOT_SENT", "METRIC_TESTED"],
    )


def test_only_the_retention_role_may_delete_a_backup_and_the_others_deny_it_to_themselves():
    for params in PARAM_SETS:
        stack = Stack(params)
        for role in FUNCTION_ROLES:
            denies = [d for d in stack.denies(role) if "dynamodb:DeleteBackup" in as_list(d["Action"])]
            if role == "RetentionFunctionRole":
                assert not denies, params
                assert stack.grants(role)["dynamodb:DeleteBackup"], params
            else:
                assert denies == [{"Sid": "NeverDeleteBackups", "Effect": "Deny", "Action": ["dynamodb:DeleteBackup", "rds:DeleteDBSnapshot", "rds:DeleteDBClusterSnapshot", "elasticache:DeleteSnapshot"], "Resource": "*"}], (role, params)
                assert "dynamodb:DeleteBackup" not in stack.grants(role), (role, params)
        # The managed policy for every other principal of the account (on by default).
        (policy,) = stack.of_type("AWS::IAM::ManagedPolicy").values()
        by_sid = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}
        assert by_sid["OnlyRetentionDeletesBackups"] == {
            "Sid": "OnlyRetentionDeletesBackups",
            "Effect": "Deny",
            "Action": ["dynamodb:DeleteBackup"],
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "<RetentionFunctionRole.Arn>"}},
        }
        assert by_sid["NoVersionOfABackupObjectDeleted"]["Action"] == ["s3:DeleteObjectVersion"]
        assert by_sid["OnlyRetentionDeletesDatabaseSnapshots"] == {
            "Sid": "OnlyRetentionDeletesDatabaseSnapshots",
            "Effect": "Deny",
            "Action": ["rds:DeleteDBSnapshot", "rds:DeleteDBClusterSnapshot", "elasticache:DeleteSnapshot"],
            "Resource": [
                "arn:aws:rds:*:123456789012:snapshot:*-backstop-*",
                "arn:aws:rds:*:123456789012:cluster-snapshot:*-backstop-*",
                "arn:aws:elasticache:*:123456789012:snapshot:*-backstop-*",
            ],
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "<RetentionFunctionRole.Arn>"}},
        }
    assert not Stack({"ProtectBackups": "false"}).of_type("AWS::IAM::ManagedPolicy")


def test_rds_rights_only_where_rds_instances_are_selected_and_scoped_to_them():
    rds_roles = {"SnapshotFunctionRole", "RetentionFunctionRole", "ValidateFunctionRole"}
    # No instance selected: no role may make any RDS call (the denies aside).
    for params in [p for p in PARAM_SETS if not ({"RdsInstances", "RdsTagValue", "AuroraClusters", "AuroraTagValue"} & set(p))]:
        stack = Stack(params)
        for role in FUNCTION_ROLES:
            assert not [a for a in stack.grants(role) if a.startswith("rds:")], (role, params)
            env = stack.props(role.replace("Role", ""))["Environment"]["Variables"]
            assert not [k for k in env if k.startswith(("BACKSTOP_RDS_", "BACKSTOP_DB_"))], (role, env)
    by_name, by_tag = Stack(RDS_BY_NAME), Stack(RDS_BY_TAG)
    for stack in (by_name, by_tag):
        for role in FUNCTION_ROLES:
            grants = [a for a in stack.grants(role) if a.startswith("rds:")]
            assert bool(grants) == (role in rds_roles), (role, grants)
    # Snapshot: CreateDBSnapshot on the named instances only (or any, with the tag condition),
    # and on snapshots named as Backstop's; copies to the replica region under the same names.
    (create,) = [s for s in by_name.statements_with("SnapshotFunctionRole", "rds:CreateDBSnapshot") if s["Sid"] == "SnapshotDatabases"]
    assert create["Resource"] == ["arn:*:rds:*:*:db:orders-db", "arn:*:rds:*:*:db:ledger-db"], create
    assert create["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    (create,) = [s for s in by_tag.statements_with("SnapshotFunctionRole", "rds:CreateDBSnapshot") if s["Sid"] == "SnapshotDatabases"]
    assert create["Resource"] == "arn:aws:rds:us-east-1:123456789012:db:*"
    assert create["Condition"]["StringEquals"]["aws:ResourceTag/backup:plan"] == "daily"
    (copy,) = by_name.statements_with("SnapshotFunctionRole", "rds:CopyDBSnapshot")
    assert copy["Resource"] == [
        "arn:aws:rds:us-east-1:123456789012:snapshot:*-backstop-*",
        "arn:aws:rds:us-west-2:123456789012:snapshot:*-backstop-*",
    ]
    assert not by_name.statements_with("SnapshotFunctionRole", "kms:CreateGrant")
    (grant,) = by_tag.statements_with("SnapshotFunctionRole", "kms:CreateGrant")
    assert grant["Resource"] == RDS_BY_TAG["DbReplicaKmsKeyArn"]
    # Retention: DeleteDBSnapshot on Backstop's names of the named instances, tagged as
    # Backstop's, in the two regions only.
    (delete,) = by_name.statements_with("RetentionFunctionRole", "rds:DeleteDBSnapshot")
    assert delete["Resource"] == ["arn:*:rds:*:*:snapshot:orders-db-backstop-*", "arn:*:rds:*:*:snapshot:ledger-db-backstop-*"], delete
    assert delete["Condition"] == {"StringEquals": {"aws:ResourceTag/backstop:managed": "true", "aws:RequestedRegion": ["us-east-1", "us-west-2"]}}
    (delete,) = by_tag.statements_with("RetentionFunctionRole", "rds:DeleteDBSnapshot")
    assert delete["Resource"] == "arn:aws:rds:*:123456789012:snapshot:*-backstop-*"
    # Validate: restores and deletes only drill instances (the prefix and the drill tag).
    (gone,) = by_name.statements_with("ValidateFunctionRole", "rds:DeleteDBInstance")
    assert gone["Resource"] == "arn:aws:rds:us-east-1:123456789012:db:backstop-drill-*"
    assert gone["Condition"] == {"StringEquals": {"aws:ResourceTag/backstop:drill": "true"}}
    assert as_list(gone["Action"]) == ["rds:ModifyDBInstance", "rds:DeleteDBInstance"]
    # The settings reach the functions that read them.
    env = lambda stack, fn: stack.props(fn)["Environment"]["Variables"]
    assert env(by_name, "SnapshotFunction")["BACKSTOP_RDS_INSTANCES"] == "orders-db,ledger-db"
    assert env(by_tag, "RetentionFunction")["BACKSTOP_RDS_INSTANCE_TAG"] == "backup:plan=daily"
    assert env(by_tag, "RetentionFunction")["BACKSTOP_RDS_RETENTION_POLICY"] == "keep_weekly=5"
    assert env(by_tag, "SnapshotFunction")["BACKSTOP_DB_REPLICA_KMS_KEY"] == RDS_BY_TAG["DbReplicaKmsKeyArn"]
    assert "BACKSTOP_DB_REPLICA_REGION" not in env(by_name, "ValidateFunction")
    assert env(by_name, "ValidateFunction")["BACKSTOP_RDS_INSTANCES"] == "orders-db,ledger-db"


def test_aurora_rights_only_where_clusters_are_selected_and_never_the_instances_ones():
    none, clusters = Stack(RDS_BY_NAME), Stack(AURORA_BY_NAME)
    cluster_actions = lambda stack, role: sorted(a for a in stack.grants(role) if "Cluster" in a)
    for role in FUNCTION_ROLES:
        assert not cluster_actions(none, role), role
        # Clusters alone: no instance rights.
        assert not [a for a in clusters.grants(role) if a.startswith("rds:") and "Cluster" not in a and a != "rds:AddTagsToResource"], role
    assert set(cluster_actions(clusters, "SnapshotFunctionRole")) == {
        "rds:CopyDBClusterSnapshot",
        "rds:CreateDBClusterSnapshot",
        "rds:DescribeDBClusterSnapshots",
        "rds:DescribeDBClusters",
    }
    (create,) = [s for s in clusters.statements_with("SnapshotFunctionRole", "rds:CreateDBClusterSnapshot") if s["Sid"] == "SnapshotClusters"]
    assert create["Resource"] == ["arn:*:rds:*:*:cluster:books"]
    (delete,) = clusters.statements_with("RetentionFunctionRole", "rds:DeleteDBClusterSnapshot")
    assert delete["Resource"] == ["arn:*:rds:*:*:cluster-snapshot:books-backstop-*"]
    assert delete["Condition"]["StringEquals"]["aws:ResourceTag/backstop:managed"] == "true"
    (gone,) = clusters.statements_with("ValidateFunctionRole", "rds:DeleteDBCluster")
    assert gone["Resource"] == "arn:aws:rds:us-east-1:123456789012:cluster:backstop-drill-*"
    assert gone["Condition"] == {"StringEquals": {"aws:ResourceTag/backstop:drill": "true"}}
    env = clusters.props("RetentionFunction")["Environment"]["Variables"]
    assert env["BACKSTOP_AURORA_CLUSTERS"] == "books" and env["BACKSTOP_AURORA_RETENTION_POLICY"] == "keep_daily=7"
    assert "BACKSTOP_RDS_INSTANCES" not in env


def test_elasticache_rights_only_where_groups_are_selected_and_scoped_to_them():
    for params in PARAM_SETS:
        stack = Stack(params)
        selected = bool({"ElastiCacheGroups", "ElastiCacheTagValue"} & set(params))
        for role in FUNCTION_ROLES:
            cache = sorted(a for a in stack.grants(role) if a.startswith("elasticache:"))
            if not selected or role not in {"SnapshotFunctionRole", "RetentionFunctionRole", "ValidateFunctionRole"}:
                assert not cache, (role, params, cache)
    by_name, by_tag = Stack(CACHE_BY_NAME), Stack(CACHE_BY_TAG)
    # Snapshots of the named groups only, or of those with the tag.
    (st,) = [s for s in by_name.statements_with("SnapshotFunctionRole", "elasticache:CreateSnapshot") if s["Sid"] == "SnapshotCaches"]
    assert st["Resource"] == [
        "arn:*:elasticache:*:*:replicationgroup:sessions",
        "arn:*:elasticache:*:*:replicationgroup:carts",
        "arn:*:elasticache:*:*:cluster:sessions-0*",
        "arn:*:elasticache:*:*:cluster:carts-0*",
    ], st
    assert st["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, st
    (st,) = [s for s in by_tag.statements_with("SnapshotFunctionRole", "elasticache:CreateSnapshot") if s["Sid"] == "SnapshotCaches"]
    assert st["Condition"]["StringEquals"]["aws:ResourceTag/backup:plan"] == "6h", st
    # Backstop's snapshot names only, and only when the request tags them as Backstop's.
    (st,) = [s for s in by_name.statements_with("SnapshotFunctionRole", "elasticache:CreateSnapshot") if s["Sid"] == "NameCacheSnapshots"]
    assert st["Resource"] == "arn:aws:elasticache:us-east-1:123456789012:snapshot:*-backstop-*", st
    assert st["Condition"] == {"StringEquals": {"aws:RequestTag/backstop:managed": "true"}}, st
    # A drill group is created and tagged only when the request tags it as a drill.
    for action in ("elasticache:CreateReplicationGroup", "elasticache:AddTagsToResource"):
        sts = {s["Sid"]: s for s in by_name.statements_with("ValidateFunctionRole", action)}
        made = sts["RestoreDrillCaches" if action.endswith("Group") else "TagDrillCaches"]
        assert made["Resource"] == [
            "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:backstop-drill-*",
            "arn:aws:elasticache:us-east-1:123456789012:cluster:backstop-drill-*",
        ], made
        assert made["Condition"] == {"StringEquals": {"aws:RequestTag/backstop:drill": "true"}}, (action, made)
    # What a drill group is made from: Backstop's snapshots, any subnet, parameter and user group.
    (st,) = [s for s in by_name.statements_with("ValidateFunctionRole", "elasticache:CreateReplicationGroup") if s["Sid"] == "RestoreDrillCachesFrom"]
    assert "Condition" not in st and st["Resource"][0] == "arn:aws:elasticache:us-east-1:123456789012:snapshot:*-backstop-*", st
    # Retention deletes Backstop's tagged snapshots of those groups only, and nothing else.
    (st,) = by_name.statements_with("RetentionFunctionRole", "elasticache:DeleteSnapshot")
    assert st["Resource"] == ["arn:*:elasticache:*:*:snapshot:sessions-backstop-*", "arn:*:elasticache:*:*:snapshot:carts-backstop-*"], st
    assert st["Condition"]["StringEquals"]["aws:ResourceTag/backstop:managed"] == "true", st
    # The drill deletes only tagged drill groups; no role but retention deletes a snapshot.
    (st,) = by_name.statements_with("ValidateFunctionRole", "elasticache:DeleteReplicationGroup")
    assert st["Resource"] == [
        "arn:aws:elasticache:us-east-1:123456789012:replicationgroup:backstop-drill-*",
        "arn:aws:elasticache:us-east-1:123456789012:cluster:backstop-drill-*",
    ], st
    assert st["Condition"] == {"StringEquals": {"aws:ResourceTag/backstop:drill": "true"}}, st
    for role in FUNCTION_ROLES:
        if role != "RetentionFunctionRole":
            assert "elasticache:DeleteSnapshot" not in by_name.grants(role), role
    # The copies' replica region means nothing to ElastiCache: no RDS or KMS right comes with it.
    assert not [a for a in by_tag.grants("SnapshotFunctionRole") if a.startswith(("rds:", "kms:CreateGrant"))]
    env = by_name.props("RetentionFunction")["Environment"]["Variables"]
    assert env["BACKSTOP_ELASTICACHE_GROUPS"] == "sessions,carts", env
    assert env["BACKSTOP_ELASTICACHE_RETENTION_POLICY"] == "keep_last=28", env
    env = by_tag.props("SnapshotFunction")["Environment"]["Variables"]
    assert env["BACKSTOP_ELASTICACHE_GROUP_TAG"] == "backup:plan=6h", env
    assert "BACKSTOP_DB_REPLICA_REGION" not in env, env


def test_the_drill_prefix_is_at_least_eight_characters_as_the_functions_require():
    param = yaml_parse(TEMPLATE.read_text())["Parameters"]["DrillTablePrefix"]
    # The functions refuse a shorter prefix at start (drill::check_table_prefix): a deploy with
    # one would fail every run, so CloudFormation refuses it first.
    assert param["MinLength"] == 8, param
    assert len(param["Default"]) >= 8


def test_the_backfill_window_reaches_exports_and_bucket_backups_only():
    stack = Stack()
    for fn in ("ExportFunction", "BucketFunction"):
        assert stack.props(fn)["Environment"]["Variables"]["BACKSTOP_BACKFILL_WINDOW"] == "26h", fn
    param = yaml_parse(TEMPLATE.read_text())["Parameters"]["BackfillWindow"]
    import re
    for good in ("1m", "26h", "2d", "3650d"):
        assert re.match(param["AllowedPattern"], good), good
    for bad in ("", "26", "1w", "-1d", "26 h"):
        assert not re.match(param["AllowedPattern"], bad), bad
