#!/usr/bin/env python3
"""Write panicparse's test inputs (stack/context_test.go, `in: []string{...}`) as files.

Usage: extract-panicparse.py $(go env GOMODCACHE)/github.com/maruel/panicparse/v2@v2.5.0/stack/context_test.go
Writes panicparse/<case>.txt beside this script: the case's lines joined with "\n", as the
test does. Cases built with strings.Repeat are left out.
"""
import json
import os
import re
import sys

src = open(sys.argv[1]).read()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "panicparse")
os.makedirs(out, exist_ok=True)
case = re.compile(r'name:\s+"([^"]+)",\s*\n\s*in:\s*\[\]string\{\n(.*?)\n\t\t\t\},', re.S)
for m in case.finditer(src):
    name, body = m.group(1), m.group(2)
    if "strings.Repeat" in body or "goroutine" not in body:
        continue
    # Go interpreted string literals with \t, \n, \", \\ escapes only: JSON reads them alike.
    lines = [json.loads(x) for x in re.findall(r'^\s*("(?:[^"\\]|\\.)*"),\s*$', body, re.M)]
    fn = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    with open(os.path.join(out, fn + ".txt"), "w") as f:
        f.write("\n".join(lines))
