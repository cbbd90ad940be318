#!/usr/bin/python3
"""check_layers.py - the include rules of projector/'s layers, checked by the test command.

Each folder of projector/ is a layer and may include only the layers listed for it below
(and itself). The pure layers include no server library, threads, sockets or clocks and
call no clock. Every project include names its layer ("model/model.h") and the file it
names exists. No file reaches itself through includes. Prints one line per broken rule as
"file:line: message" and exits 1 if there is any; prints the count of files checked.
Usage: check_layers.py [ROOT]   (ROOT defaults to the checkout holding this script)
"""
import os
import re
import sys

# Layer -> the layers it may include, lowest first. Keep README.md's Layout table in step.
ALLOWED = {
    "base": [],
    "os": [],
    "model": ["base"],
    "apply": ["base", "model"],
    "source": ["base", "os"],
    "board": ["base", "os", "model"],
    "sink": ["base", "os", "model", "apply"],
    "http": ["base", "os", "model", "board"],
    "run": ["base", "os", "model", "apply", "source", "sink", "board", "http"],
    "cli": ["base", "os", "model", "apply", "source", "sink", "board", "http", "run"],
}
PURE = {"base", "model", "apply"}
# System headers a pure layer must not include, and calls it must not make.
IMPURE_HEADERS = re.compile(
    r"^(libpq-fe\.h|hiredis/.*|pthread\.h|microhttpd\.h|sys/socket\.h|netinet/.*|arpa/.*|"
    r"netdb\.h|poll\.h|sys/select\.h|sys/epoll\.h|signal\.h|threads\.h|systemd/.*)$")
IMPURE_CALLS = re.compile(
    r"\b(clock_gettime|gettimeofday|time|nanosleep|usleep|sleep|pthread_\w+|socket|connect|"
    r"getaddrinfo|rand|random)\s*\(")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def strip_comments_and_strings(text):
    """Blanks out comments and string literals, keeping line breaks."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text[i] in "\"'":
            q, j = text[i], i + 1
            while j < n and text[j] != q:
                j += 2 if text[j] == "\\" else 1
            out.append(q + " " * max(0, j - i - 1) + q)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    src = os.path.join(root, "projector")
    problems, graph, files = [], {}, []
    for layer in sorted(os.listdir(src)):
        folder = os.path.join(src, layer)
        if not os.path.isdir(folder):
            continue
        if layer not in ALLOWED:
            problems.append(f"projector/{layer}: folder is not a known layer "
                            f"(add it to ALLOWED in tests/check_layers.py and to the README)")
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith((".c", ".h")):
                files.append((layer, f"{layer}/{name}"))
    for layer, rel in files:
        path = os.path.join(src, rel)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        graph[rel] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            kind, target = m.groups()
            where = f"projector/{rel}:{lineno}"
            if kind == "<":
                if layer in PURE and IMPURE_HEADERS.match(target):
                    problems.append(f"{where}: pure layer \"{layer}\" includes <{target}>")
                continue
            if "/" not in target:
                problems.append(f"{where}: include \"{target}\" does not name its layer")
                continue
            to_layer = target.split("/", 1)[0]
            if not os.path.isfile(os.path.join(src, target)):
                problems.append(f"{where}: included file projector/{target} does not exist")
                continue
            graph[rel].append(target)
            if to_layer != layer and to_layer not in ALLOWED[layer]:
                problems.append(f"{where}: layer \"{layer}\" may not include \"{target}\" "
                                f"(it may include: {', '.join(ALLOWED[layer]) or 'nothing'})")
        if layer in PURE:
            code = strip_comments_and_strings(text)
            for lineno, line in enumerate(code.splitlines(), 1):
                for m in IMPURE_CALLS.finditer(line):
                    problems.append(f"projector/{rel}:{lineno}: pure layer \"{layer}\" calls "
                                    f"{m.group(1)}()")
    problems += include_cycles(graph)
    for p in problems:
        print(p)
    print(f"check_layers: {len(files)} files checked, {len(problems)} problems")
    return 1 if problems else 0


def include_cycles(graph):
    """One message per include cycle found by a depth-first walk."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                found.append("projector/" + node + ": include cycle: " + " -> ".join(cycle))
            elif state.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])
    return found


if __name__ == "__main__":
    sys.exit(main())
