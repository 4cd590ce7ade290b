"""Starts moto's server as `python3 -m moto.server` does, after mending two places where moto
departs from DynamoDB (issue 36, item 7). Written against moto 5.2.5 (requirements-dev.txt);
started by testkit/src/local.rs with the arguments moto.server takes (-H, -p, -c, -k).

1. Item.is_within_segment (moto/dynamodb/models/dynamo_type.py) hashes the hash key's value
   with `value.encode("utf8")`; a binary (B) key's value is `bytes`, so a segmented Scan of a
   table whose hash key is binary answers HTTP 500 (AttributeError). Mended: bytes are hashed
   as they are; every other key goes through moto's own code unchanged.
2. RestoredTable._parse_params_from_backup and RestoredPITTable._parse_params_from_table
   (moto/dynamodb/models/table.py) copy key schema, attributes and throughput but not the billing
   mode, so an on-demand (PAY_PER_REQUEST) source is restored with no billing mode (read as
   PROVISIONED). DynamoDB keeps the source's mode. Mended: the restored table takes the billing
   mode of the table the backup holds (`Backup.table`, a copy of the source taken at backup
   time) or, for a point-in-time restore, of the source table.

If moto's code is not as expected (a function missing), the launcher prints a warning
(prefixed WARNING_PREFIX) and starts moto without that mend.
"""

import sys

TARGET_MOTO_VERSION = "5.2.5"
WARNING_PREFIX = "backstop moto mends: WARNING:"


def warn(message):
    print(f"{WARNING_PREFIX} {message}", file=sys.stderr, flush=True)


def mend_binary_segment_hash():
    """Segmented Scan on a binary hash key: hash bytes as bytes (moto 5.2.5 calls .encode)."""
    try:
        from moto.dynamodb.models.dynamo_type import Item
        from moto.utilities.utils import md5_hash
    except ImportError as e:
        return f"segmented Scan of binary hash keys not mended: {e}"
    original = getattr(Item, "is_within_segment", None)
    if original is None:
        return "segmented Scan of binary hash keys not mended: Item.is_within_segment is missing"

    def is_within_segment(self, segments):
        value = getattr(getattr(self, "hash_key", None), "value", None)
        if segments == (None, None) or not isinstance(value, bytes):
            return original(self, segments)
        segment, total_segments = segments
        # As moto 5.2.5 does for strings: the first byte of the key's MD5, modulo the segments.
        return segment == md5_hash(value).digest()[0] % total_segments

    is_within_segment.__doc__ = original.__doc__
    is_within_segment.backstop_mended = True
    Item.is_within_segment = is_within_segment
    return None


def mend_restored_billing_mode():
    """Restores keep the source's billing mode (moto 5.2.5 leaves it unset)."""
    try:
        from moto.dynamodb.models.table import RestoredPITTable, RestoredTable
    except ImportError as e:
        return f"billing mode of restored tables not mended: {e}"
    missing = [
        name
        for cls, name in (
            (RestoredTable, "_parse_params_from_backup"),
            (RestoredPITTable, "_parse_params_from_table"),
        )
        if not hasattr(cls, name)
    ]
    if missing:
        return f"billing mode of restored tables not mended: {', '.join(missing)} missing"
    from_backup = RestoredTable._parse_params_from_backup
    from_table = RestoredPITTable._parse_params_from_table

    def parse_params_from_backup(self, backup):
        params = from_backup(self, backup)
        params.setdefault("billing_mode", getattr(backup.table, "billing_mode", None))
        return params

    def parse_params_from_table(self, table):
        params = from_table(self, table)
        params.setdefault("billing_mode", getattr(table, "billing_mode", None))
        return params

    parse_params_from_backup.backstop_mended = True
    parse_params_from_table.backstop_mended = True
    RestoredTable._parse_params_from_backup = parse_params_from_backup
    RestoredPITTable._parse_params_from_table = parse_params_from_table
    return None


def apply():
    """Applies every mend; returns the warnings (also printed) for those not applied."""
    warnings = []
    try:
        import moto

        version = getattr(moto, "__version__", "unknown")
        if version != TARGET_MOTO_VERSION:
            warnings.append(
                f"moto {version} is installed; these mends were written for moto "
                f"{TARGET_MOTO_VERSION} (applied where the functions exist)"
            )
    except ImportError as e:
        warnings.append(f"moto is not importable: {e}")
        for w in warnings:
            warn(w)
        return warnings
    for mend in (mend_binary_segment_hash, mend_restored_billing_mode):
        problem = mend()
        if problem:
            warnings.append(problem)
    for w in warnings:
        warn(w)
    return warnings


def main():
    apply()
    # As `python3 -m moto.server ARGS` (moto/server.py: main(argv) parses sys.argv[1:]).
    from moto.server import main as moto_server_main

    moto_server_main(sys.argv[1:])


if __name__ == "__main__":
    main()
