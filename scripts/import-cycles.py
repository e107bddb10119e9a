#!/usr/bin/env python3
"""Import circles among a Rust crate's modules, read from `use crate::...` / `crate::...` paths.

    scripts/import-cycles.py [SRC_DIR]      (default: src; a copy of the team's shared/tools one, so a clone runs its own CI)

Maps every `crate::a::b::Name`, `super::Name` and child-module `m::Name` path in a file (outside
`#[cfg(test)]` modules) to the module file it names, builds the module graph, and prints each circle (strongly connected set of more
than one file) with the paths that tie it. Exit 1 when there is a circle, 0 when there is none.
A circle means no file in it can be read, changed or tested without the others: break it by
moving the shared type down to the lowest module that needs it.
"""

import re
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
files = sorted(p for p in src.rglob("*.rs"))


def module_of(path: Path) -> tuple[str, ...]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


mods = {module_of(p): p for p in files}


def strip_tests(text: str) -> str:
    """Drop comments (doc links are not imports) and `#[cfg(test)] mod ... { ... }` blocks."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def targets(text: str):
    """Module paths named by crate:: paths, including `use crate::{a, b::c}` groups."""
    for m in re.finditer(r"crate::((?:\w+::)*\{[^;]*?\}|(?:\w+::)*\w+)", text):
        path = m.group(1)
        if "{" in path:
            head, _, body = path.partition("{")
            head = [h for h in head.split("::") if h]
            depth, item, items = 0, "", []
            for ch in body.rstrip("}"):
                if ch == "," and depth == 0:
                    items.append(item); item = ""
                    continue
                depth += {"{": 1, "}": -1}.get(ch, 0)
                item += ch
            items.append(item)
            for it in items:
                it = re.sub(r"\{.*", "", it.strip()).split(" as ")[0]
                yield tuple(head + [s for s in it.split("::") if s and s != "self"])
        else:
            yield tuple(path.split("::"))


def relative_targets(text: str, here: tuple[str, ...]):
    """`super::x` paths, resolved against the file's own module."""
    for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*\{[^;]*?\}|(?:\w+::)*\w+)", text):
        up = m.group(1).count("super::")
        base = here[: len(here) - up] if up <= len(here) else ()
        for t in targets("crate::" + m.group(2)):
            yield base + t


def child_targets(text: str, here: tuple[str, ...]):
    """`self::m::x` and `m::x` where `m` is a child module of this file's own
    (a `mod.rs` naming what its children define, as `live::EventStream`)."""
    for m in re.finditer(r"(?<![:\w])(?:self::)?(\w+)::((?:\w+::)*\w+)", text):
        if m.group(1) not in ("crate", "super", "self") and here + (m.group(1),) in mods:
            yield here + (m.group(1),) + tuple(m.group(2).split("::"))


def alias_targets(text: str, found: list[tuple[str, ...]]):
    """`m::x` where `m` was brought in by `use crate::...::m;` (a module used by its name)."""
    aliases = {t[-1]: t for t in found if t and t[-1] != "*"}
    for m in re.finditer(r"(?<![:\w])(\w+)::((?:\w+::)*\w+)", text):
        if m.group(1) in aliases and m.group(1) not in ("crate", "super", "self"):
            yield aliases[m.group(1)] + tuple(m.group(2).split("::"))


edges: dict[Path, dict[Path, set[str]]] = {p: {} for p in files}
for p in files:
    here = module_of(p)
    text = strip_tests(p.read_text(errors="replace"))
    found = [*targets(text), *relative_targets(text, here), *child_targets(text, here)]
    for t in [*found, *alias_targets(text, found)]:
        for n in range(len(t), 0, -1):  # the longest prefix that is a module file
            if t[:n] in mods:
                q = mods[t[:n]]
                if q != p and not (here[: len(t[:n])] == t[:n]):  # not a parent module
                    edges[p].setdefault(q, set()).add("::".join(t[n:]) or "*")
                break

# Tarjan's strongly connected components
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


for v in files:
    if v not in index:
        visit(v)

if not sccs:
    print(f"no import circle among {len(files)} files under {src}/")
    sys.exit(0)
for i, comp in enumerate(sccs, 1):
    print(f"circle {i}: {len(comp)} files: {', '.join(str(c) for c in comp)}")
    inside = set(comp)
    for a in comp:
        for b, names in sorted(edges[a].items()):
            if b in inside:
                print(f"  {a} -> {b}: {', '.join(sorted(names))}")
sys.exit(1)
