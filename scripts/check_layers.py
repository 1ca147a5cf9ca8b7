#!/usr/bin/env python3
"""Lists #includes that run up the stack of whale's layers.

The layers and what each may include are the whale_layer(NAME BELOW ...) calls in
CMakeLists.txt (the build enforces the same rule with per-layer include trees). Prints one
line per offending include and exits 1 if there are any.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
cmake = (root / "CMakeLists.txt").read_text()
allowed = {}
for m in re.finditer(r"^whale_layer\((\w+)([^)]*)\)", cmake, re.M):
    name, args = m.group(1), m.group(2).split()
    below = []
    if "BELOW" in args:
        for a in args[args.index("BELOW") + 1:]:
            if a.isupper():  # the next keyword (LINK, TARGET)
                break
            below.append(a)
    allowed[name] = {name, *below}

src = root / "src"
folders = {p.name for p in src.iterdir() if p.is_dir()}
unknown = folders - allowed.keys()
bad = [f"src/{f}/: a folder that is not a layer in CMakeLists.txt" for f in sorted(unknown)]
include = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')
for layer, ok in sorted(allowed.items()):
    for path in sorted((src / layer).glob("*")):
        if path.suffix not in (".h", ".cpp"):  # data beside the code (the server's web page)
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = include.match(line)
            if m and m.group(1) in folders and m.group(1) not in ok:
                bad.append(f"{path.relative_to(root)}:{n}: {layer} includes {m.group(1)}/ (allowed: {', '.join(sorted(ok))})")
for b in bad:
    print(b)
if bad:
    sys.exit(1)
print(f"layers: {len(allowed)} layers, no include runs up the stack")
