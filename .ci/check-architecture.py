#!/usr/bin/env python3
"""Keeps ARCHITECTURE.md true to the code: every file it names exists, and in the path tables every
function of the "function" column is declared in the row's file (or, for `Type.member`, somewhere in
the sources). Run from the repository root; exits 1 listing what no longer matches."""
import pathlib, re, sys

root = pathlib.Path(__file__).resolve().parent.parent
text = (root / "ARCHITECTURE.md").read_text()
sources = [p for d in ("Sources", "Tests") for p in (root / d).rglob("*") if p.suffix in (".swift", ".c", ".h")]
by_name = {}
for p in sources:
    by_name.setdefault(p.name, []).append(p)
problems = []

def resolve(name):
    """The files a backticked path names (`IO/Loop+IO.swift`, `shims.c`, `Sources/.../x.c`)."""
    base = name.split("/")[-1]
    return [p for p in by_name.get(base, []) if str(p).endswith(name) or "/" not in name]

for name in sorted(set(re.findall(r"`([\w+./-]+\.(?:swift|c|h))`", text))):
    if not resolve(name):
        problems.append(f"file `{name}` does not exist")

def declared(identifier, files):
    member = identifier.split(".")[-1]
    pattern = re.compile(r"(func|var|let|case|init)\s+" + re.escape(member) + r"\b|\b" + re.escape(member) + r"\s*\(")
    return any(pattern.search(p.read_text(errors="ignore")) for p in files)

for line in text.splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) < 6 or not cells[1].isdigit():
        continue
    file_cell, function_cell = cells[2], cells[3]
    files = [f for n in re.findall(r"`([\w+./-]+\.(?:swift|c|h))`", file_cell) for f in resolve(n)]
    for identifier in re.findall(r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?`", function_cell):
        if identifier.endswith((".swift", ".c")):
            continue
        scope = files if files and "." not in identifier else sources
        if not declared(identifier, scope):
            problems.append(f"row {cells[1]} ({file_cell}): `{identifier}` is not declared there")

if problems:
    print("ARCHITECTURE.md no longer matches the code:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("ARCHITECTURE.md: every named file exists and every traced function is declared where the table says")
