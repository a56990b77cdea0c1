#!/usr/bin/env python3
"""The module graph of server/src: which top-level module uses which, and its cycles.

A top-level module is a file or directory right under server/src (`floor`, `api`, ...);
`lib.rs` and `main.rs` are the root and are left out (they wire everything). An edge A -> B
means some non-test code of A names `crate::B` (in a `use` or a path); `#[cfg(test)] mod`
blocks and `*_tests.rs` files are left out. The graph must have no cycle: HTTP (`api`,
`signal`, `state`, `web`, `layers`) on top, domain (`floor`, `live_captions`, `session`,
`media_engine`, `peer_resources`, ...) below, never importing HTTP (issue 17; STYLE.md §6).
Exit status 1 on a cycle that the allow-list below does not explain, or on an allow-list
entry whose edge is gone. `make module-graph` runs it; `make test` includes it.

    python3 tools/module_graph.py            # edges and cycles; fails on a cycle
    python3 tools/module_graph.py --edges    # the edges only
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "src")

# Edges that still close a cycle, each with the reason it is still there and the move that
# removes it (issue 17, Must 3). Cycles through any other edge fail; an entry whose edge is
# gone fails too, so the list only shrinks.
ALLOWED = {}

CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def strip_comments_and_tests(text):
    """Comments go, and so does an inline `#[cfg(test)] mod` (by convention the file's end):
    tests may reach anywhere without making the modules depend on each other."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    cut = re.search(r"#\[cfg\(test\)\](\s*#\[[^\]]*\])*\s*mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def top_level(path):
    rel = os.path.relpath(path, ROOT)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def is_test_file(path):
    return os.path.basename(path).endswith("_tests.rs")


def edges():
    modules = {top_level(os.path.join(ROOT, n)) for n in os.listdir(ROOT)}
    modules -= {"lib", "main"}
    graph = {m: set() for m in modules}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs") or is_test_file(name):
                continue
            path = os.path.join(dirpath, name)
            src = top_level(path)
            if src not in graph:
                continue
            text = strip_comments_and_tests(open(path, encoding="utf-8").read())
            targets = set(CRATE_PATH.findall(text))
            for group in USE_GROUP.findall(text):
                for item in group.split(","):
                    head = re.split(r"::|\s", item.strip(), maxsplit=1)[0]
                    if head:
                        targets.add(head)
            for dst in targets:
                if dst in modules and dst != src:
                    graph[src].add(dst)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if (v, w) in ALLOWED:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    graph = edges()
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            note = "  (allowed: %s)" % ALLOWED[(src, dst)] if (src, dst) in ALLOWED else ""
            print("%s -> %s%s" % (src, dst, note))
    if "--edges" in sys.argv:
        return 0
    stale = [e for e in ALLOWED if e[1] not in graph.get(e[0], ())]
    for e in stale:
        print("allow-list entry %s -> %s: no such edge any more; remove it" % e)
    found = cycles(graph)
    for comp in found:
        inner = ["%s -> %s" % (a, b) for a in comp for b in sorted(graph[a])
                 if b in comp and (a, b) not in ALLOWED]
        print("cycle through %s:\n  %s" % (", ".join(comp), "\n  ".join(inner)))
    if found or stale:
        return 1
    print("module graph: %d modules, no cycle" % len(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
