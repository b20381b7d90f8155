#!/usr/bin/env python3
"""Fails when a module of a crate uses a module that uses it back.

Crates cannot depend on each other in a cycle (Cargo refuses), but the
modules inside one crate can, and such a pair can only be read, changed and
tested together. This reads every crate of the workspace (`src/` of each
member) and draws an edge from module A to module B when A's code names an
item of B: `crate::b::x`, `super::x`, `self::b::x`, a bare `b::x` for a child
`b` that A declares, and names a module re-exports with `pub use`. A file is
one module; a crate root (`lib.rs`, `main.rs`) is one too. Unit tests
(`#[cfg(test)] mod tests`) are left out: they use everything by design.

Usage: python3 scripts/module-cycles.py   (exit 1 and the cycles if any)
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def members():
    """The workspace members' folders, from the root Cargo.toml."""
    text = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"^members\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return [ROOT / m for m in re.findall(r'"([^"]+)"', block.group(1))]


def strip(text):
    """Code without comments, strings and the unit-test module."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    test = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+tests\b", text)
    return text[: test.start()] if test else text


class Module:
    def __init__(self, path, file):
        self.path = path  # ("crate", "export", "sarif")
        self.file = file
        self.code = strip(file.read_text())
        self.children = re.findall(
            rf"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*;", self.code, re.M
        )
        # `pub use child::{A, B}` / `pub use child::A` in this module:
        # a name that points into a child module.
        self.reexports = {}
        for child, names in re.findall(
            rf"pub(?:\([^)]*\))?\s+use\s+(?:self::)?({IDENT})::\{{([^}}]*)\}}", self.code
        ):
            for name in re.findall(rf"(?:^|,)\s*({IDENT})", names):
                self.reexports[name] = child
        for child, name in re.findall(
            rf"pub(?:\([^)]*\))?\s+use\s+(?:self::)?({IDENT})::({IDENT})\s*;", self.code
        ):
            self.reexports[name] = child


def crate_modules(src):
    """Every module file of one crate, by module path."""
    roots = [f for f in (src / "lib.rs", src / "main.rs") if f.exists()]
    modules = {}

    def visit(path, file, folder):
        module = Module(path, file)
        modules[path] = module
        for child in module.children:
            for candidate in (folder / f"{child}.rs", folder / child / "mod.rs"):
                if candidate.exists():
                    visit(path + (child,), candidate, folder / child)
                    break

    for root in roots:
        visit(("crate",) if root.name == "lib.rs" else ("main",), root, src)
    return modules


def resolve(modules, start, segments):
    """The deepest module a path names, following `pub use` re-exports."""
    path = start
    for segment in segments:
        here = modules.get(path)
        if here is None:
            break
        if segment in here.children:
            path = path + (segment,)
        elif segment in here.reexports:
            path = path + (here.reexports[segment],)
            break
        else:
            break
    return path


def use_paths(tree):
    """The full paths of one `use` tree: `a::{b, c::{d, e}}` -> a::b, a::c::d, a::c::e."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\bas\w+$", "", tree)]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for part in parts if part for p in use_paths(prefix + part)]


def referenced_paths(code):
    """Every path a module's code names: `use` trees expanded, and inline paths."""
    paths = []
    for tree in re.findall(r"\buse\s+([^;]*);", code):
        paths += use_paths(tree)
    code = re.sub(r"\buse\s+[^;]*;", "", code)
    paths += [m.group(0) for m in re.finditer(rf"\b(?:crate|super|self|{IDENT})(?:::{IDENT})+", code)]
    return paths


def edges(modules):
    out = {path: set() for path in modules}
    for path, module in modules.items():
        root = path[:1]
        for full in referenced_paths(module.code):
            segments = [s for s in full.split("::") if s and s != "*"]
            if len(segments) < 2:
                continue
            head, rest = segments[0], segments[1:]
            if head == "crate":
                target = resolve(modules, root, rest)
            elif head == "super":
                parent = path[:-1] or root
                while rest and rest[0] == "super":
                    parent, rest = parent[:-1] or root, rest[1:]
                target = resolve(modules, parent, rest)
            elif head == "self":
                target = resolve(modules, path, rest)
            elif head in module.children:
                target = resolve(modules, path, [head] + rest)
            else:
                continue
            # An item a module names inside itself is no dependency.
            if target != path:
                out[path].add(target)
    return out


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            connect(v)
    return found


def main():
    failed = False
    checked = 0
    for member in members():
        src = member / "src"
        if not src.is_dir():
            continue
        modules = crate_modules(src)
        checked += len(modules)
        graph = edges(modules)
        for component in cycles(graph):
            failed = True
            names = sorted("::".join(p) for p in component)
            print(f"{member.relative_to(ROOT)}: modules that use each other: {', '.join(names)}")
            for a in sorted(component):
                for b in sorted(graph[a]):
                    if b in component:
                        print(f"    {'::'.join(a)} ({modules[a].file.relative_to(ROOT)}) uses {'::'.join(b)}")
    if failed:
        return 1
    print(f"no module cycles in {checked} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
