"""After `sam build`: every function's artifact is an aarch64 ELF executable (what the
template's arm64 functions run), linked position-dependent (functions/link.rs; position-
independent when BACKSTOP_PIE is set); prints each one's size. Exit 1 when any is missing or
wrong."""

import os
import pathlib
import sys

import yaml  # PyYAML, installed with cfn-lint and SAM

EM_AARCH64 = 183
ET_EXEC, ET_DYN = 2, 3


class Loader(yaml.SafeLoader):
    pass


# CloudFormation's short forms (!Ref, !Sub, ...) as plain values.
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def main(build_dir: str, template: str) -> int:
    doc = yaml.load(pathlib.Path(template).read_text(), Loader=Loader)
    functions = [
        name
        for name, r in doc["Resources"].items()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    bad = 0
    pie = os.environ.get("BACKSTOP_PIE", "") not in ("", "0")
    want = ET_DYN if pie else ET_EXEC
    print(f"{'function':<20} {'artifact':<52} {'bytes':>10}  machine")
    for name in functions:
        path = pathlib.Path(build_dir) / name / "bootstrap"
        if not path.is_file():
            print(f"{name:<20} {str(path):<52} {'-':>10}  MISSING")
            bad += 1
            continue
        head = path.read_bytes()[:20]
        elf = head[:4] == b"\x7fELF"
        machine = int.from_bytes(head[18:20], "little") if elf else None
        kind = int.from_bytes(head[16:18], "little") if elf else None
        ok = elf and machine == EM_AARCH64 and head[4] == 2  # 64-bit
        linked = {ET_EXEC: "position-dependent", ET_DYN: "PIE"}.get(kind, f"type {kind}")
        linked_ok = kind == want
        print(
            f"{name:<20} {str(path):<52} {path.stat().st_size:>10}  "
            f"{'aarch64 ELF' if ok else f'NOT aarch64 ELF (machine {machine})'}, {linked}"
            f"{'' if linked_ok else ' (NOT as asked: BACKSTOP_PIE=' + os.environ.get('BACKSTOP_PIE', '') + ')'}"
        )
        bad += not (ok and linked_ok)
    print(f"{len(functions) - bad} of {len(functions)} functions built for arm64")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
