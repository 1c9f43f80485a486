#!/usr/bin/env python3
"""Count individual test cases over every meson test of a build dir.

cmocka binaries speak TAP (counted from their stdout in meson's testlog),
pytest files write JUnit XML to BUILD/test-reports/, anything else counts
as one case. A meson test that failed without a failing case inside (crash,
sanitizer report, timeout) adds one failure. Prints failures by name, then
"N passed, N failed, N skipped" as the last line; exits 1 on any failure.
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

build = sys.argv[1]
log = os.path.join(build, "meson-logs", "testlog.json")
passed = failed = skipped = 0
bad = []
if not os.path.exists(log):
    print("no meson test log")
    print("0 passed, 1 failed")
    sys.exit(1)
with open(log, encoding="utf-8") as f:
    entries = [json.loads(line) for line in f if line.strip()]
for e in entries:
    name = e["name"]
    ok = e["result"] in ("OK", "EXPECTEDFAIL", "SKIP")
    p = fl = sk = 0
    report = os.path.join(build, "test-reports", name.split(" / ")[-1] + ".xml")
    if ":integration /" in name and os.path.exists(report):
        root = ET.parse(report).getroot()
        for tc in root.iter("testcase"):
            if tc.find("failure") is not None or tc.find("error") is not None:
                fl += 1
                bad.append(f"{name}::{tc.get('name')}")
            elif tc.find("skipped") is not None:
                sk += 1
            else:
                p += 1
    elif e.get("protocol") == "tap" or re.search(r"^(not )?ok \d+", e.get("stdout", ""), re.M):
        for m in re.finditer(r"^(not ok|ok) \d+ -? ?(.*)$", e.get("stdout", ""), re.M):
            if "# SKIP" in m.group(2):
                sk += 1
            elif m.group(1) == "ok":
                p += 1
            else:
                fl += 1
                bad.append(f"{name}::{m.group(2).strip()}")
    else:
        if e["result"] == "SKIP":
            sk += 1
        elif ok:
            p += 1
    if not ok and fl == 0:
        fl += 1
        bad.append(f"{name} ({e['result']}: crash, sanitizer report or timeout; see meson-logs)")
    passed += p
    failed += fl
    skipped += sk
for b in bad:
    print("FAILED", b)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
