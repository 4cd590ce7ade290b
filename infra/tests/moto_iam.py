"""moto in server mode with IAM enforced the way AWS decides it, for the IAM-enforced tests.

moto authenticates every request (SigV4 against the caller's access key, the session token of an
assumed role) and answers a refusal in each service's own error format, but its own policy
evaluation checks actions only: DynamoDB, SNS and Lambda requests reach it with the resource "*",
it knows no NotResource, and of the condition operators only StringEquals. This launcher keeps
moto's authentication and error answers and replaces the decision: for each request it works out
the IAM action(s), the resource ARN(s) and the request's context keys (dynamodb:LeadingKeys from
the item keys, dynamodb:Attributes from the attribute names a write names, a table's
aws:ResourceTag/<key>, a TagResource's aws:RequestTag/<key> and aws:TagKeys, s3:prefix,
aws:RequestedRegion, aws:SecureTransport as in AWS, where every call is TLS), and asks iam-simulate (infra/tests/iam/evaluate.mjs, npm, pinned) whether the caller's
policies allow it. A request is allowed only when every (action, resource) it needs is.

Resource policies moto does not keep (a DynamoDB table's) come from the JSON file named by
BACKSTOP_IAM_RESOURCE_POLICIES ({ARN: policy}); a KMS key's policy comes from moto.

Every decision goes as one JSON line to the file named by BACKSTOP_IAM_LOG: principal, action,
resource, context, result. The tests read it to list what each role really used.

Usage: python3 moto_iam.py PORT  (enforcement starts when the test POSTs 0 to
/moto-api/reset-auth, after it has set the account up).
"""

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from moto.iam import access_control
from moto.iam.access_control import IAMPolicy

EVALUATOR = Path(__file__).resolve().parent / "iam" / "evaluate.mjs"
_lock = threading.Lock()
_node = None
_log = open(os.environ.get("BACKSTOP_IAM_LOG", os.devnull), "a", buffering=1)


class Unmapped(Exception):
    """A request this launcher cannot name the resource of: refused, and logged as such."""


def _ask(question):
    global _node
    with _lock:
        if _node is None or _node.poll() is not None:
            _node = subprocess.Popen(
                ["node", str(EVALUATOR)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        _node.stdin.write(json.dumps(question) + "\n")
        _node.stdin.flush()
        return json.loads(_node.stdout.readline())


def _first(data, name):
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _json_body(req):
    try:
        return json.loads(req._body or b"{}")
    except (ValueError, TypeError):
        return {}


def _dynamodb_table(req, name):
    from moto.dynamodb.models import dynamodb_backends

    try:
        return dynamodb_backends[req.account_id][req._region].get_table(name)
    except Exception:
        return None


def _leading(req, table_name, keys):
    """The partition key values of these item keys (dynamodb:LeadingKeys)."""
    table = _dynamodb_table(req, table_name)
    if table is None:
        return []
    values = []
    for key in keys:
        value = (key or {}).get(table.hash_key_attr)
        if isinstance(value, dict) and value:
            values.append(str(next(iter(value.values()))))
    return values


# Words of DynamoDB's expression grammar that are not attribute names (case-insensitive).
_EXPRESSION_WORDS = {"set", "remove", "add", "delete", "and", "or", "not", "in", "between"}


def _expression_names(expression, names):
    """The top-level attribute names an expression names: each path's first element (a bare
    name, or a #placeholder resolved), never a function, a keyword or a :value."""
    found = set()
    for m in re.finditer(r"(?<![\w.#:\]])(#?[A-Za-z_][\w]*)(\s*\()?", expression or ""):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _EXPRESSION_WORDS:
            continue
        found.add(names.get(word, word) if word.startswith("#") else word)
    return found


def _attributes(spec, item_field=None):
    """dynamodb:Attributes of one item request: the top-level attribute names it reads, writes,
    removes or tests in a condition (DynamoDB Developer Guide, "Using IAM policy conditions for
    fine-grained access control": an attribute "read, written, or evaluated in a conditional
    write"), the key's among them."""
    names = spec.get("ExpressionAttributeNames") or {}
    found = set()
    for field in (item_field, "Key", "AttributeUpdates", "Expected"):
        if field and isinstance(spec.get(field), dict):
            found.update(spec[field])
    found.update(spec.get("AttributesToGet") or [])
    for field in ("UpdateExpression", "ConditionExpression", "ProjectionExpression", "FilterExpression", "KeyConditionExpression"):
        found |= _expression_names(spec.get(field), names)
    found.update(names.values())
    return sorted(found)


def _table_tags(req, arn):
    """The aws:ResourceTag/<key> context keys of a DynamoDB table moto holds."""
    from moto.dynamodb.models import dynamodb_backends

    try:
        backend = dynamodb_backends[req.account_id][req._region]
        tags = backend.list_tags_of_resource(arn)
    except Exception:
        return {}
    return {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags or []}


def _query_leading(req, body):
    table = _dynamodb_table(req, body.get("TableName", ""))
    if table is None:
        return []
    names = body.get("ExpressionAttributeNames") or {}
    values = body.get("ExpressionAttributeValues") or {}
    found = []
    for left, right in re.findall(r"(#?[\w.]+)\s*=\s*(:\w+)", body.get("KeyConditionExpression") or ""):
        if names.get(left, left) == table.hash_key_attr and right in values:
            found.append(str(next(iter(values[right].values()))))
    for name, cond in (body.get("KeyConditions") or {}).items():
        if name == table.hash_key_attr:
            found.extend(str(next(iter(v.values()))) for v in cond.get("AttributeValueList", []))
    return found


def _dynamodb(req, action):
    """(action, resource, extra context) triples a DynamoDB request needs."""
    body = _json_body(req)
    base = f"arn:aws:dynamodb:{req._region}:{req.account_id}:table/"
    name = action.split(":", 1)[1]
    if name in ("ListTables", "ListBackups", "ListExports", "ListImports", "DescribeLimits", "DescribeEndpoints"):
        return [(action, "*", {})]
    if name in ("DescribeBackup", "DeleteBackup"):
        return [(action, body["BackupArn"], {})]
    if name == "RestoreTableFromBackup":
        return [(action, body["BackupArn"], {}), (action, base + body["TargetTableName"], {})]
    if name == "RestoreTableToPointInTime":
        source = body.get("SourceTableArn") or base + body["SourceTableName"]
        return [(action, source, _table_tags(req, source)), (action, base + body["TargetTableName"], {})]
    if name == "ExportTableToPointInTime":
        return [(action, body["TableArn"], {})]
    if name == "DescribeExport":
        arn = body["ExportArn"]
        # moto names an export "table/<table ARN>/import/<id>"; AWS, "table/<name>/export/<id>".
        moto = re.fullmatch(r"arn:aws:dynamodb:[^:]*:\d*:table/(arn:aws:dynamodb:[^/]*:table/[^/]+)/import/(\w+)", arn)
        if moto:
            arn = f"{moto.group(1)}/export/{moto.group(2)}"
        return [(action, arn, {})]
    if name == "ImportTable":
        return [(action, base + body["TableCreationParameters"]["TableName"], {})]
    if name == "DescribeImport":
        return [(action, body["ImportArn"], {})]
    if name == "TagResource":
        # The tags asked for, as AWS gives them to IAM, besides the table's own.
        tags = {t["Key"]: t.get("Value", "") for t in body.get("Tags") or []}
        context = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
        context["aws:TagKeys"] = sorted(tags)
        return [(action, body["ResourceArn"], {**_table_tags(req, body["ResourceArn"]), **context})]
    if name in ("UntagResource", "ListTagsOfResource", "GetResourcePolicy", "PutResourcePolicy"):
        return [(action, body["ResourceArn"], _table_tags(req, body["ResourceArn"]))]
    if name in ("BatchWriteItem", "BatchGetItem"):
        out = []
        for table, requests in (body.get("RequestItems") or {}).items():
            if name == "BatchGetItem":
                keys = requests.get("Keys", [])
            else:
                keys = [(r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key") for r in requests]
            context = {"dynamodb:LeadingKeys": _leading(req, table, keys) or ["<not found>"]}
            if name == "BatchWriteItem":
                context["dynamodb:Attributes"] = sorted({a for k in keys for a in (k or {})})
            out.append((action, base + table, context))
        return out
    if name in ("TransactWriteItems", "TransactGetItems"):
        # IAM has no action of that name: each part needs its own action on its table.
        out = []
        for part in body.get("TransactItems", []):
            (kind, spec), = part.items()
            sub = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}[kind]
            key = spec.get("Item") if kind == "Put" else spec.get("Key")
            table = spec["TableName"]
            context = {"dynamodb:LeadingKeys": _leading(req, table, [key]) or ["<not found>"]}
            if kind != "Get":
                context["dynamodb:Attributes"] = _attributes(spec, "Item")
            out.append((f"dynamodb:{sub}", base + table, context))
        return out
    table = body.get("TableName") or (body.get("TableArn") or "").rsplit("/", 1)[-1]
    if not table:
        raise Unmapped(action)
    resource = body["TableArn"] if body.get("TableArn") else base + table
    context = {}
    if name in ("GetItem", "DeleteItem", "UpdateItem"):
        context["dynamodb:LeadingKeys"] = _leading(req, table, [body.get("Key")])
    elif name == "PutItem":
        context["dynamodb:LeadingKeys"] = _leading(req, table, [body.get("Item")])
    elif name == "Query":
        context["dynamodb:LeadingKeys"] = _query_leading(req, body)
    if context.get("dynamodb:LeadingKeys") == []:
        # An item request always has a partition key: one not found here must not pass as "no
        # key" (which ForAllValues conditions allow).
        context["dynamodb:LeadingKeys"] = ["<partition key not found by moto_iam.py>"]
    if name in ("PutItem", "UpdateItem", "DeleteItem"):
        context["dynamodb:Attributes"] = _attributes(body, "Item")
    if re.fullmatch(r"arn:aws:dynamodb:[^:]*:\d+:table/[^/]+", resource):
        context.update(_table_tags(req, resource))
    if name in ("Query", "Scan") and body.get("IndexName"):
        resource = f"{resource}/index/{body['IndexName']}"
    return [(action, resource, context)]


def _s3(req, action, resource):
    """moto names most S3 actions by method alone; IAM's names depend on the query too."""
    url = urlparse(req._path)
    query = parse_qs(url.query, keep_blank_values=True)
    headers = {k.lower(): v for k, v in req._headers.items()}
    method = req._method
    key_level = resource.count("/") >= 1 and not resource.endswith(":::*")
    if key_level:
        if "retention" in query:
            action = "s3:PutObjectRetention" if method == "PUT" else "s3:GetObjectRetention"
        elif "legal-hold" in query:
            action = "s3:PutObjectLegalHold" if method == "PUT" else "s3:GetObjectLegalHold"
        elif "attributes" in query:
            action = "s3:GetObjectVersionAttributes" if "versionId" in query else "s3:GetObjectAttributes"
        elif method in ("GET", "HEAD") and "versionId" in query and "tagging" not in query:
            action = "s3:GetObjectVersion"
        elif method == "GET" and "tagging" in query:
            action = "s3:GetObjectVersionTagging" if "versionId" in query else "s3:GetObjectTagging"
        elif method == "PUT" and "tagging" in query:
            action = "s3:PutObjectVersionTagging" if "versionId" in query else "s3:PutObjectTagging"
        elif method == "DELETE" and "versionId" in query:
            action = "s3:DeleteObjectVersion"
        out = [(action, resource, {})]
        source = headers.get("x-amz-copy-source")
        if method == "PUT" and source:
            source = unquote(source.lstrip("/"))
            path, _, version = source.partition("?versionId=")
            read = "s3:GetObjectVersion" if version else "s3:GetObject"
            out.append((read, f"arn:aws:s3:::{path}", {}))
        return out
    context = {}
    if method == "POST" and "delete" in query:
        # DeleteObjects: s3:DeleteObject (or DeleteObjectVersion) on every key it names.
        body = (req._body or b"").decode("utf-8", "replace")
        out = []
        for obj in re.findall(r"<Object>(.*?)</Object>", body, re.S):
            key = re.search(r"<Key>(.*?)</Key>", obj, re.S).group(1)
            key = key.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'")
            verb = "s3:DeleteObjectVersion" if "<VersionId>" in obj else "s3:DeleteObject"
            out.append((verb, f"{resource}/{key}", {}))
        return out or [("s3:DeleteObject", resource + "/*", {})]
    if method == "GET":
        for flag, name in (
            ("object-lock", "s3:GetBucketObjectLockConfiguration"),
            ("encryption", "s3:GetEncryptionConfiguration"),
            ("replication", "s3:GetReplicationConfiguration"),
            ("ownershipControls", "s3:GetBucketOwnershipControls"),
        ):
            if flag in query:
                action = name
        if action in ("s3:ListBucket", "s3:ListBucketVersions"):
            context["s3:prefix"] = query.get("prefix", [""])[0]
    return [(action, resource, context)]


def _query_protocol(req, action, resource="*"):
    service = action.split(":", 1)[0]
    if resource != "*":
        return [(action, resource, {})]  # moto named it (SQS queues)
    if service in ("cloudformation", "iam"):
        return [(action, "*", {})]  # only the test's own admin calls these
    if service == "monitoring":
        # CloudWatch signs as "monitoring"; IAM calls it "cloudwatch".
        service = "cloudwatch"
        action = "cloudwatch:" + action.split(":", 1)[1]
        body = _json_body(req) if (req._body or b"")[:1] in (b"{", "{") else {}
        data = req._data if isinstance(req._data, dict) else {}
        namespace = body.get("Namespace") or _first(data, "Namespace")
        return [(action, "*", {"cloudwatch:namespace": namespace} if namespace else {})]
    data = req._data if isinstance(req._data, dict) else {}
    if service == "sns":
        arn = _first(data, "TopicArn") or _first(data, "TargetArn")
        return [(action, arn or "*", {})]
    if service in ("cloudwatch", "sts"):
        return [(action, "*", {})]
    if service == "lambda":
        match = re.search(r"/functions/([^/]+)", unquote(req._path))
        if not match:
            return [(action, "*", {})]
        name = match.group(1)
        arn = name if name.startswith("arn:") else f"arn:aws:lambda:{req._region}:{req.account_id}:function:{name}"
        return [(action, arn, {})]
    if service == "kms":
        key = _json_body(req).get("KeyId")
        return [(action, _key_arn(req, key) if key else "*", {})]
    raise Unmapped(action)


def _rds_tags(req, kind, name, region=None):
    """The aws:ResourceTag/<key> context keys of an RDS instance or snapshot moto holds."""
    from moto.rds.models import rds_backends

    try:
        backend = rds_backends[req.account_id][region or req._region]
        store = {
            "db": backend.databases,
            "snapshot": backend.database_snapshots,
            "cluster": backend.clusters,
            "cluster-snapshot": backend.cluster_snapshots,
        }[kind]
        tags = store[name].tags or []
    except Exception:
        return {}
    return {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags}


def _rds(req, action):
    """RDS (the query protocol): the resource ARNs each action is authorized on, as the Service
    Authorization Reference lists them, with the resources' tags; tags on a new resource need
    rds:AddTagsToResource on it too."""
    data = req._data if isinstance(req._data, dict) else {}
    region, account = req._region, req.account_id

    def arn(kind, name, in_region=None):
        if name and name.startswith("arn:"):
            return name
        return f"arn:aws:rds:{in_region or region}:{account}:{kind}:{name}"

    def src_region(name):
        return name.split(":")[3] if name and name.startswith("arn:") else region

    def short(name):
        return name.rsplit(":", 1)[-1] if name and name.startswith("arn:") else name

    op = action.split(":", 1)[1]
    db = _first(data, "DBInstanceIdentifier")
    snap = _first(data, "DBSnapshotIdentifier")
    tagged = any(k.startswith("Tags.") for k in data) or _first(data, "Tags.Tag.1.Key") is not None
    needs = []
    cluster = _first(data, "DBClusterIdentifier")
    csnap = _first(data, "DBClusterSnapshotIdentifier")
    if op in ("DescribeDBInstances", "DescribeDBSnapshots", "DescribeDBClusters", "DescribeDBClusterSnapshots", "CreateDBInstance", "CreateDBCluster", "ListTagsForResource"):
        return [(action, "*", {})]
    if op == "CreateDBSnapshot":
        needs = [(action, arn("db", db), _rds_tags(req, "db", db)), (action, arn("snapshot", snap), {})]
        new = arn("snapshot", snap)
    elif op == "CopyDBSnapshot":
        source = _first(data, "SourceDBSnapshotIdentifier")
        target = _first(data, "TargetDBSnapshotIdentifier")
        needs = [
            (action, arn("snapshot", source), _rds_tags(req, "snapshot", short(source), src_region(source))),
            (action, arn("snapshot", target), {}),
        ]
        new = arn("snapshot", target)
    elif op == "DeleteDBSnapshot":
        return [(action, arn("snapshot", snap), _rds_tags(req, "snapshot", snap))]
    elif op == "RestoreDBInstanceFromDBSnapshot":
        needs = [(action, arn("db", db), {}), (action, arn("snapshot", snap), _rds_tags(req, "snapshot", short(snap)))]
        for field, kind in (("DBSubnetGroupName", "subgrp"), ("OptionGroupName", "og"), ("DBParameterGroupName", "pg")):
            if _first(data, field):
                needs.append((action, arn(kind, _first(data, field)), {}))
        new = arn("db", db)
    elif op == "RestoreDBInstanceToPointInTime":
        source = _first(data, "SourceDBInstanceIdentifier")
        target = _first(data, "TargetDBInstanceIdentifier")
        needs = [(action, arn("db", source), _rds_tags(req, "db", source)), (action, arn("db", target), {})]
        new = arn("db", target)
    elif op in ("ModifyDBInstance", "DeleteDBInstance"):
        return [(action, arn("db", db), _rds_tags(req, "db", db))]
    elif op == "CreateDBClusterSnapshot":
        needs = [(action, arn("cluster", cluster), _rds_tags(req, "cluster", cluster)), (action, arn("cluster-snapshot", csnap), {})]
        new = arn("cluster-snapshot", csnap)
    elif op == "CopyDBClusterSnapshot":
        source = _first(data, "SourceDBClusterSnapshotIdentifier")
        target = _first(data, "TargetDBClusterSnapshotIdentifier")
        needs = [
            (action, arn("cluster-snapshot", source), _rds_tags(req, "cluster-snapshot", short(source), src_region(source))),
            (action, arn("cluster-snapshot", target), {}),
        ]
        new = arn("cluster-snapshot", target)
    elif op == "DeleteDBClusterSnapshot":
        return [(action, arn("cluster-snapshot", csnap), _rds_tags(req, "cluster-snapshot", csnap))]
    elif op == "RestoreDBClusterFromSnapshot":
        snapshot = _first(data, "SnapshotIdentifier")
        needs = [(action, arn("cluster", cluster), {}), (action, arn("cluster-snapshot", snapshot), _rds_tags(req, "cluster-snapshot", short(snapshot)))]
        for field, kind in (("DBSubnetGroupName", "subgrp"), ("DBClusterParameterGroupName", "cluster-pg")):
            if _first(data, field):
                needs.append((action, arn(kind, _first(data, field)), {}))
        new = arn("cluster", cluster)
    elif op == "RestoreDBClusterToPointInTime":
        source = _first(data, "SourceDBClusterIdentifier")
        needs = [(action, arn("cluster", source), _rds_tags(req, "cluster", source)), (action, arn("cluster", cluster), {})]
        new = arn("cluster", cluster)
    elif op in ("ModifyDBCluster", "DeleteDBCluster"):
        return [(action, arn("cluster", cluster), _rds_tags(req, "cluster", cluster))]
    else:
        raise Unmapped(action)
    if tagged:
        needs.append(("rds:AddTagsToResource", new, {}))
    return needs


def _elasticache_tags(req, arn):
    """The aws:ResourceTag/<key> context keys of an ElastiCache resource moto holds."""
    from moto.elasticache.models import elasticache_backends

    try:
        backend = elasticache_backends[req.account_id][req._region]
        tags = backend.tagging_service.list_tags_for_resource(arn)["Tags"]
    except Exception:
        return {}
    return {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tags}


def _elasticache(req, action):
    """ElastiCache (the query protocol): the resource ARNs each action is authorized on, with
    the resources' tags; tags on a new resource need elasticache:AddTagsToResource on it too."""
    data = req._data if isinstance(req._data, dict) else {}
    region, account = req._region, req.account_id

    def arn(kind, name):
        return name if name.startswith("arn:") else f"arn:aws:elasticache:{region}:{account}:{kind}:{name}"

    op = action.split(":", 1)[1]
    group = _first(data, "ReplicationGroupId")
    snap = _first(data, "SnapshotName")
    tagged = any(k.startswith("Tags.") for k in data)
    # The tags a create asks for, as AWS gives them to IAM: aws:RequestTag/<key>, aws:TagKeys.
    asked = {}
    for k in data:
        m = re.fullmatch(r"Tags\.(?:Tag|member)\.(\d+)\.Key", k)
        if m:
            asked[_first(data, k)] = _first(data, f"Tags.{k.split('.')[1]}.{m.group(1)}.Value") or ""
    request_tags = {f"aws:RequestTag/{k}": v for k, v in asked.items()}
    if asked:
        request_tags["aws:TagKeys"] = sorted(asked)
    if op in ("DescribeReplicationGroups", "DescribeCacheClusters", "DescribeSnapshots", "ListTagsForResource"):
        return [(action, "*", {})]
    if op == "CreateSnapshot":
        source = arn("replicationgroup", group) if group else arn("cluster", _first(data, "CacheClusterId"))
        needs = [
            (action, source, {**_elasticache_tags(req, source), **request_tags}),
            (action, arn("snapshot", snap), dict(request_tags)),
        ]
        new = arn("snapshot", snap)
    elif op == "DeleteSnapshot":
        return [(action, arn("snapshot", snap), _elasticache_tags(req, arn("snapshot", snap)))]
    elif op == "CreateReplicationGroup":
        new = arn("replicationgroup", group)
        needs = [(action, new, dict(request_tags)), (action, arn("cluster", f"{group}-001"), dict(request_tags))]
        if snap:
            needs.append((action, arn("snapshot", snap), {**_elasticache_tags(req, arn("snapshot", snap)), **request_tags}))
        for field, kind in (("CacheSubnetGroupName", "subnetgroup"), ("CacheParameterGroupName", "parametergroup")):
            if _first(data, field):
                needs.append((action, arn(kind, _first(data, field)), dict(request_tags)))
        for k in data:
            if re.fullmatch(r"UserGroupIds\.member\.\d+", k):
                needs.append((action, arn("usergroup", _first(data, k)), dict(request_tags)))
    elif op == "DeleteReplicationGroup":
        return [(action, arn("replicationgroup", group), _elasticache_tags(req, arn("replicationgroup", group)))]
    else:
        raise Unmapped(action)
    if tagged:
        needs.append(("elasticache:AddTagsToResource", new, dict(request_tags)))
    return needs


def _key_arn(req, key):
    if not key:
        return None
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        from moto.kms.models import kms_backends

        try:
            key = kms_backends[req.account_id][req._region].get_key_id_from_alias(key) or key
        except Exception:
            pass
    return f"arn:aws:kms:{req._region}:{req.account_id}:key/{key}"


def _resource_policies():
    """{resource ARN: policy} that the test gives (BACKSTOP_IAM_RESOURCE_POLICIES, a JSON file
    it may write after start): the policies AWS holds on resources moto keeps none for, such as
    a DynamoDB table's resource policy."""
    path = os.environ.get("BACKSTOP_IAM_RESOURCE_POLICIES")
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _key_policy(req, arn):
    from moto.kms.models import kms_backends

    key = kms_backends[req.account_id][req._region].keys.get(arn.rsplit("/", 1)[-1])
    if key is None:
        return None
    policy = key.policy
    if isinstance(policy, str):
        try:
            return json.loads(policy)
        except ValueError:
            # (moto's CloudFormation stores the document as a Python literal)
            import ast

            return ast.literal_eval(policy)
    return policy


def _find(node, name):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == name:
                return v
            found = _find(v, name)
            if found is not None:
                return found
    if isinstance(node, list):
        for v in node:
            found = _find(v, name)
            if found is not None:
                return found
    return None


def _on_behalf(req, needs):
    """What AWS also checks as the caller for these requests: the KMS key of an SSE-KMS object
    or bucket (kms:GenerateDataKey to write, kms:Decrypt to read or for a multipart upload),
    of an encrypted topic (both, to publish), and the S3 writes of a table export (the caller
    must be allowed them on the destination)."""
    extra = []
    for action, arn, _ in needs:
        if action.startswith("s3:") and arn.startswith("arn:aws:s3:::") and "/" in arn:
            from moto.s3.models import s3_backends

            bucket_name, _, key_name = arn[len("arn:aws:s3:::"):].partition("/")
            try:
                backend = s3_backends[req.account_id]["aws"]
                bucket = backend.get_bucket(bucket_name)
            except Exception:
                continue
            headers = {k.lower(): v for k, v in req._headers.items()}
            query = parse_qs(urlparse(req._path).query, keep_blank_values=True)
            if action == "s3:PutObject":
                sse = headers.get("x-amz-server-side-encryption") or _find(bucket.encryption, "SSEAlgorithm")
                key = headers.get("x-amz-server-side-encryption-aws-kms-key-id") or _find(bucket.encryption, "KMSMasterKeyID")
                if sse == "aws:kms" and key and "partNumber" not in query:
                    extra.append(("kms:GenerateDataKey", _key_arn(req, key), {}))
                    if req._method == "POST" and "uploads" in query:
                        extra.append(("kms:Decrypt", _key_arn(req, key), {}))
            elif action in ("s3:GetObject", "s3:GetObjectVersion") and req._method in ("GET", "HEAD"):
                obj = backend.get_object(bucket_name, unquote(key_name), version_id=(query.get("versionId") or [None])[0])
                if obj is None:
                    # For a key that does not exist S3 answers 404 only to a caller allowed
                    # s3:ListBucket on the bucket (the request carries no s3:prefix), and 403
                    # AccessDenied to any other.
                    extra.append(("s3:ListBucket", f"arn:aws:s3:::{bucket_name}", {}))
                elif req._method == "GET" and "attributes" not in query and obj.encryption == "aws:kms" and obj.kms_key_id:
                    extra.append(("kms:Decrypt", _key_arn(req, obj.kms_key_id), {}))
            if req._method in ("PUT", "POST") and action == "s3:PutObject" and "partNumber" not in query:
                # Tags on a new object or a copy: s3:PutObjectTagging on it; a copy that keeps
                # its source's tags (the default directive): s3:GetObjectTagging on the source.
                source = headers.get("x-amz-copy-source")
                directive = (headers.get("x-amz-tagging-directive") or "COPY").upper()
                if headers.get("x-amz-tagging") or (source and directive == "COPY"):
                    extra.append(("s3:PutObjectTagging", arn, {}))
                if source and directive == "COPY":
                    path, _, version = unquote(source.lstrip("/")).partition("?versionId=")
                    read = "s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging"
                    extra.append((read, f"arn:aws:s3:::{path}", {}))
                if source:
                    # Copying an SSE-KMS object decrypts it with its key, as the caller.
                    path, _, version = unquote(source.lstrip("/")).partition("?versionId=")
                    src_bucket, _, src_key = path.partition("/")
                    try:
                        obj = backend.get_object(src_bucket, src_key, version_id=version or None)
                    except Exception:
                        obj = None
                    if obj is not None and obj.encryption == "aws:kms" and obj.kms_key_id:
                        extra.append(("kms:Decrypt", _key_arn(req, obj.kms_key_id), {}))
        elif action in ("dynamodb:RestoreTableFromBackup", "dynamodb:RestoreTableToPointInTime") and "/backup/" not in arn and arn != _json_body(req).get("SourceTableArn") and not arn.endswith("/" + str(_json_body(req).get("SourceTableName"))):
            # "read and write permissions on the target table are necessary" (DynamoDB
            # Developer Guide, Using IAM with backup and restore), as its example lists them.
            for a in ("PutItem", "UpdateItem", "DeleteItem", "GetItem", "Query", "Scan", "BatchWriteItem"):
                extra.append((f"dynamodb:{a}", arn, {}))
        elif action == "sns:Publish" and arn.startswith("arn:aws:sns:"):
            from moto.sns.models import sns_backends

            try:
                topic = sns_backends[req.account_id][req._region].get_topic(arn)
            except Exception:
                continue
            if topic.kms_master_key_id:
                key = _key_arn(req, topic.kms_master_key_id)
                extra += [("kms:GenerateDataKey", key, {}), ("kms:Decrypt", key, {})]
        elif action == "dynamodb:ExportTableToPointInTime":
            body = _json_body(req)
            dest = f"arn:aws:s3:::{body.get('S3Bucket')}/{(body.get('S3Prefix') or '').strip('/')}/AWSDynamoDB/data"
            extra += [(a, dest, {}) for a in ("s3:PutObject", "s3:PutObjectAcl", "s3:AbortMultipartUpload")]
            if body.get("S3SseKmsKeyId"):
                extra.append(("kms:GenerateDataKey", _key_arn(req, body["S3SseKmsKeyId"]), {}))
    return extra


def check_action_permitted(self, resource):
    if self._action == "sts:GetCallerIdentity":
        return  # always allowed, as in AWS
    principal = self._access_key.arn
    # aws:PrincipalArn is the role's ARN for a role session, as in AWS.
    match = re.match(r"arn:aws:sts::(\d+):assumed-role/([^/]+)/", principal)
    principal_arn = f"arn:aws:iam::{match.group(1)}:role/{match.group(2)}" if match else principal
    try:
        if self._action.startswith("s3:"):
            needs = _s3(self, self._action, resource)
        elif self._action.startswith("dynamodb:"):
            needs = _dynamodb(self, self._action)
        elif self._action.startswith("rds:"):
            needs = _rds(self, self._action)
        elif self._action.startswith("elasticache:"):
            needs = _elasticache(self, self._action)
        else:
            needs = _query_protocol(self, self._action, resource)
    except (Unmapped, KeyError, ValueError) as e:
        _log.write(json.dumps({"principal": principal, "action": self._action, "resource": None, "result": "Unmapped", "error": repr(e)}) + "\n")
        self._raise_access_denied()
    needs = needs + _on_behalf(self, needs)
    policies = [IAMPolicy(p)._policy_json for p in self._access_key.collect_policies()]
    for action, arn, extra in needs:
        context = {"aws:RequestedRegion": self._region, "aws:SecureTransport": "true", "aws:PrincipalArn": principal_arn}
        context.update(extra)
        question = {
            "principal": principal,
            "action": action,
            "resource": arn,
            "account": self.account_id,
            "context": context,
            "policies": policies,
        }
        resource_policy = _resource_policies().get(arn.split("/index/")[0])
        if resource_policy:
            question["resourcePolicy"] = resource_policy
        if action.startswith("kms:") and arn.startswith("arn:aws:kms:"):
            # A key's own policy decides with the caller's (it must at least let the account's
            # IAM policies grant use of the key, as the default key policy does).
            question["resourcePolicy"] = _key_policy(self, arn)
        answer = _ask(question)
        _log.write(json.dumps({"principal": principal, "action": action, "resource": arn, "context": context, **answer}) + "\n")
        if os.environ.get("BACKSTOP_IAM_DEBUG") and answer.get("result") != "Allowed":
            _log.write(json.dumps({"debug_policies": policies}) + "\n")
        if answer.get("result") != "Allowed":
            self._raise_access_denied()


access_control.IAMRequestBase.check_action_permitted = check_action_permitted

# moto checks a signature over the request body it kept; for a form-encoded body (SNS, the query
# protocol) it keeps none, werkzeug having parsed the form, and signs its re-encoding of the
# parsed form instead, which differs from what the client signed. Reading the body once first
# makes werkzeug keep it and parse the form from that copy.
from moto.core import request as _moto_request

_request_init = _moto_request.Request.__init__


def _keep_form_body(self, *args, **kwargs):
    _request_init(self, *args, **kwargs)
    if (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
        self.get_data(cache=True)


_moto_request.Request.__init__ = _keep_form_body

_check_signature = access_control.IAMRequestBase.check_signature


def check_signature(self):
    try:
        _check_signature(self)
    except Exception:
        _log.write(json.dumps({"principal": self._access_key.arn, "action": self._action, "resource": None, "result": "SignatureDoesNotMatch"}) + "\n")
        if os.environ.get("BACKSTOP_IAM_DEBUG"):
            auth = self._create_auth(self._access_key.create_credentials())
            _log.write(json.dumps({"debug": auth.canonical_request(self._create_aws_request()), "body": repr(self._body)[:2000]}) + "\n")
        raise


access_control.IAMRequestBase.check_signature = check_signature


if __name__ == "__main__":
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
