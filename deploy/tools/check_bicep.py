#!/usr/bin/env python3
"""Offline checks of the Bicep templates, for want of the Bicep compiler here.

* every .bicep file parses (pycep-parser, a Bicep grammar in Python: syntax only,
  no type checking, no resource-schema checking);
* every module path exists, every parameter passed to a module is declared by it,
  and every module parameter without a default is passed;
* every `symbol.property` reference names a declared parameter, variable,
  resource, module or loop variable (catches renamed or misspelt symbols);
* every resource type carries an API version;
* parameter defaults reference only parameters and functions (Bicep refuses
  variables and resources there, BCP072);
* no symbol is declared twice;
* role assignments use the built-in role definition ids they claim.

Usage: check_bicep.py <deploy/bicep>
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pycep import BicepParser

BUILT_IN_ROLES = {
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# Names Bicep provides: functions used as `name().x` and namespaces.
BUILT_INS = {"az", "sys", "resourceGroup", "subscription", "tenant", "environment", "deployment"}

errors: list[str] = []


def accessor(node):
    op = node.get("operator") if isinstance(node, dict) else None
    return op.get("operands", {}) if isinstance(op, dict) and op.get("type") == "property_accessor" else None


def walk(node, found: set[str]) -> None:
    """Collects the symbols that start property chains (`a` of `a.b.c`).

    pycep nests a chain to the right, a.(b.c): only the outermost operand_1 is a
    symbol; the operand_1 of the nested accessors are property names.
    """
    operands = accessor(node)
    if operands is not None:
        first = operands.get("operand_1")
        if isinstance(first, str):
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", first):
                found.add(first)
        else:
            walk(first, found)
        rest = operands.get("operand_2")
        while accessor(rest) is not None:
            inner = accessor(rest)
            if not isinstance(inner.get("operand_1"), str):
                walk(inner.get("operand_1"), found)
            rest = inner.get("operand_2")
        if not isinstance(rest, str):
            walk(rest, found)
    elif isinstance(node, dict):
        for v in node.values():
            walk(v, found)
    elif isinstance(node, list):
        for v in node:
            walk(v, found)


def code_only(expr: str) -> str:
    """The expression with string literals removed, interpolations ('${...}') kept."""
    out, i, in_str = [], 0, False
    while i < len(expr):
        c = expr[i]
        if not in_str:
            if c == "'":
                in_str = True
            elif c == "/" and expr[i:i + 2] == "//":
                break
            else:
                out.append(c)
        elif c == "\\":
            i += 1
        elif c == "'":
            in_str = False
        elif expr[i:i + 2] == "${":
            depth, j = 1, i + 2
            while j < len(expr) and depth:
                depth += {"{": 1, "}": -1}.get(expr[j], 0)
                j += 1
            out.append(" " + expr[i + 2:j - 1] + " ")
            i = j - 1
        i += 1
    return "".join(out)


def declared_params(tree: dict) -> tuple[set[str], set[str]]:
    params = tree.get("parameters", {})
    required = {n for n, p in params.items() if p.get("default") is None}
    return set(params), required


def main(folder: Path) -> int:
    files = sorted(folder.rglob("*.bicep"))
    trees: dict[Path, dict] = {}
    for f in files:
        try:
            trees[f] = BicepParser().parse(file_path=f)
            print(f"parsed {f.relative_to(folder.parent)}")
        except Exception as e:  # noqa: BLE001 - report any parser failure
            errors.append(f"{f}: does not parse: {type(e).__name__}: {str(e).splitlines()[0]}")
    for f, tree in trees.items():
        source = f.read_text()
        symbols = set(tree.get("parameters", {})) | set(tree.get("variables", {})) \
            | set(tree.get("resources", {})) | set(tree.get("modules", {}))
        # Loop variables: [for x in ...] and [for (x, i) in ...].
        symbols |= set(re.findall(r"\[\s*for\s+\(?\s*([A-Za-z_]\w*)", source))
        used: set[str] = set()
        walk(tree, used)
        # Symbols inside string interpolations: '${name}' and '${name.prop}'
        # (not function calls such as '${split(...)}').
        used |= set(re.findall(r"\$\{\s*([A-Za-z_]\w*)\b(?!\s*\()", source))
        for name in sorted(used - symbols - BUILT_INS):
            errors.append(f"{f.name}: `{name}.` refers to nothing declared")
        # Parameter defaults: only parameters and functions (BCP072).
        not_allowed = (set(tree.get("variables", {})) | set(tree.get("resources", {}))
                       | set(tree.get("modules", {})))
        for m in re.finditer(r"^param\s+(\w+)\s+\w+\s*=\s*(.+)$", source, re.M):
            for ident in set(re.findall(r"\b([A-Za-z_]\w*)\b(?!\s*\()", code_only(m.group(2)))) & not_allowed:
                errors.append(f"{f.name}: default of param {m.group(1)} uses {ident}; only parameters may be referenced there")
        # Duplicate declarations (pycep keeps the last one silently).
        kinds = re.findall(r"^(param|var|resource|module|output)\s+(\w+)\b", source, re.M)
        seen_names: dict[str, str] = {}
        for kind, name in kinds:
            key = ("output:" if kind == "output" else "") + name
            if key in seen_names:
                errors.append(f"{f.name}: {name} is declared twice")
            seen_names[key] = kind
        for name, res in tree.get("resources", {}).items():
            rtype = res.get("type", "")
            if not res.get("api_version"):
                errors.append(f"{f.name}: resource {name} ({rtype}) has no API version")
        for name, mod in tree.get("modules", {}).items():
            path = (f.parent / mod["detail"]["path"]).resolve()
            if not path.exists():
                errors.append(f"{f.name}: module {name}: {mod['detail']['path']} does not exist")
                continue
            declared, required = declared_params(trees[path])
            config = mod.get("config", {})
            if "condition" in config:  # module x '...' = if (cond) { ... }
                config = config.get("config", {})
            passed = set((config.get("params") or {}).keys())
            for p in sorted(passed - declared):
                errors.append(f"{f.name}: module {name} passes {p!r}, which {path.name} does not declare")
            for p in sorted(required - passed):
                errors.append(f"{f.name}: module {name} does not pass required {p!r} of {path.name}")
        for guid in re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", source):
            if guid not in BUILT_IN_ROLES:
                errors.append(f"{f.name}: {guid} is not one of the built-in roles this kit uses")
        for guid, role in BUILT_IN_ROLES.items():
            if f.name == "main.bicep" and guid not in source:
                errors.append(f"{f.name}: role {role} ({guid}) is not assigned")
    for e in errors:
        print(f"FAIL {e}")
    print(f"bicep: {len(trees)}/{len(files)} files parsed, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/bicep").resolve()))
