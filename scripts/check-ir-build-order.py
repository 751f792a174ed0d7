#!/usr/bin/env python3
"""Finds calls that build IR in two or more of their arguments.

C++ leaves the evaluation order of function arguments unspecified: GCC evaluates them
right to left, clang left to right. A call such as

    arith::AddFOp::create(b, loc, arith::MulFOp::create(b, loc, a, c),
                          arith::MulFOp::create(b, loc, bv, s));

inserts its two operands in a different order under each compiler, so the IR, the
generated code and the artifact depend on the compiler that built xfmr. Build such
operands in statements, in order. This check flags every call with two or more
arguments that each contain an IR-building call:

- `X::create(` and `.create<`,
- any call whose first argument is a builder (`b`, `builder`, `rewriter`, ...),
- any function or lambda defined in the scanned files that returns an IR value
  (`Value name(`, `auto name = [`), except the helpers in NOT_IR below.

Brace-initializer lists (`ValueRange{x(b), y(b)}`) are evaluated in order and are not
flagged; lambdas passed as arguments run later and are not counted.

Usage: check-ir-build-order.py FILE...   (exit 1 and one line per finding)
"""

import re
import sys

# Helpers that return types, attributes or lookups, never new operations.
NOT_IR = {"act", "buffer", "f", "dims", "get", "getResult", "getType", "cast", "dyn_cast",
          "if", "for", "while", "return"}

BUILDER_CALL = re.compile(
    r"::create\s*\(|\.create\s*<|"
    r"\b\w+\s*\(\s*(?:b|builder|rewriter|nb|ib|ob|\w*[bB]uilder)\s*[,)]")
HELPER_DEFINITION = [
    re.compile(r"\b(?:mlir::)?(?:Value|Operation\s*\*|func::FuncOp|[A-Z]\w*Op)\s+(\w+)\s*\("),
    re.compile(r"\bauto\s+(\w+)\s*=\s*\["),
]


def blank_comments_and_strings(source: str) -> str:
    """The source with comments and literal contents replaced by spaces (same offsets)."""
    out, i, n = [], 0, len(source)
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
        elif source[i] in "\"'":
            quote, j = source[i], i + 1
            while j < n and source[j] != quote:
                j += 2 if source[j] == "\\" else 1
            out.append(quote + " " * (j - i - 1) + quote)
            i = j + 1
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def arguments(text: str, open_paren: int):
    """(begin, end) of each top-level argument of the call whose '(' is at open_paren."""
    depth, parts, begin = 0, [], open_paren + 1
    for k in range(open_paren, len(text)):
        c = text[k]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                parts.append((begin, k))
                return parts
        elif c == "," and depth == 1:
            parts.append((begin, k))
            begin = k + 1
    return parts


def main(paths):
    texts = {path: blank_comments_and_strings(open(path).read()) for path in paths}
    helpers = set()
    for text in texts.values():
        for pattern in HELPER_DEFINITION:
            helpers.update(m.group(1) for m in pattern.finditer(text))
    helpers -= NOT_IR
    helper_call = re.compile(r"(?<![\w.>])(?:" + "|".join(sorted(helpers)) + r")\s*\(")
    findings = []
    for path, text in texts.items():
        for match in re.finditer(r"[\w>\])]\s*\(", text):
            open_paren = match.end() - 1
            if re.search(r"\b(?:if|for|while|switch|return|sizeof)\s*$",
                         text[max(0, match.start() - 8):match.start() + 1]):
                continue
            building = []
            for begin, end in arguments(text, open_paren):
                argument = text[begin:end]
                if re.match(r"\s*\[[^\]]*\]\s*\(", argument):  # a lambda: runs later
                    continue
                if BUILDER_CALL.search(argument) or helper_call.search(argument):
                    building.append(" ".join(argument.split())[:50])
            if len(building) >= 2:
                line = text.count("\n", 0, open_paren) + 1
                findings.append(f"{path}:{line}: {len(building)} arguments build IR, in an "
                                f"order the C++ compiler chooses: " + " | ".join(building))
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} call(s) build IR in several arguments: build the operands in "
              "statements, in order (see the docstring of this script)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
