#!/usr/bin/env python3
"""Size check run by scripts/test.sh: no source file under connector/ or media/ over 800 lines,
no function over 80 lines (from the line of its opening brace to its closing brace, both at
column 0, as clang-format lays out every function here). Prints each offender and exits 1."""
import os
import re
import sys

MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 80
ROOTS = ("connector", "media")


def functions(lines):
    """(name, first line number, length) of each function: a '{' alone at column 0 whose
    preceding lines (back to a blank line or a ';'/'}' line) hold the signature."""
    name, start = None, None
    for i, line in enumerate(lines):
        if line.rstrip("\n") == "{":
            j = i - 1
            sig = ""
            while j >= 0 and lines[j].strip() and not lines[j].rstrip().endswith((";", "}")):
                sig = lines[j] + sig
                j -= 1
            m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", sig)
            name, start = (m.group(1) if m else "?"), i
        elif line.startswith("}") and start is not None:
            yield name, start + 1, i - start + 1
            name, start = None, None


def main(top):
    bad = 0
    for root in ROOTS:
        for d, _, files in os.walk(os.path.join(top, root)):
            for f in sorted(files):
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(d, f)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    lines = fh.readlines()
                rel = os.path.relpath(path, top)
                if len(lines) > MAX_FILE_LINES:
                    print(f"{rel}: {len(lines)} lines (limit {MAX_FILE_LINES})")
                    bad += 1
                for name, line, n in functions(lines):
                    if n > MAX_FUNCTION_LINES:
                        print(f"{rel}:{line}: function {name} is {n} lines "
                              f"(limit {MAX_FUNCTION_LINES})")
                        bad += 1
    if bad:
        print(f"size check: {bad} over the limits")
        return 1
    print("size check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
