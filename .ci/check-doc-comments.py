#!/usr/bin/env python3
"""Lists public declarations of this repository's Sources that have no doc comment of their own.

Reads symbol graphs (swift package dump-symbol-graph); a declaration whose only documentation is
inherited from another module (a protocol requirement's) counts as undocumented. Exit 1 if any.
"""
import json
import sys

missing = []
for path in sys.argv[1:]:
    graph = json.load(open(path))
    module = graph["module"]["name"]
    for symbol in graph["symbols"]:
        uri = symbol.get("location", {}).get("uri", "")
        if "/Sources/" not in uri or symbol.get("accessLevel") not in ("public", "open"):
            continue
        doc = symbol.get("docComment") or {}
        if doc.get("lines") and doc.get("module", module) == module:
            continue
        line = symbol["location"]["position"]["line"] + 1
        where = uri.split("/Sources/", 1)[1]
        missing.append(f"Sources/{where}:{line}: {symbol['kind']['displayName'].lower()} {'.'.join(symbol['pathComponents'])}")

for entry in sorted(set(missing)):
    print(entry)
if missing:
    sys.exit(f"{len(set(missing))} public declaration(s) without a doc comment")
print("every public declaration has a doc comment")
