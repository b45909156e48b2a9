#!/usr/bin/python3
"""Line and branch coverage per module of libbarlow, from an lcov tracefile.

    /usr/bin/python3 tests/coverage_report.py build/coverage/libbarlow.info [--files]

A module is a folder of libbarlow/ (augment, common, io, kernels, layers, loss, model, optim);
each one's LF/LH (lines found/hit) and BRF/BRH (branches found/hit) are the sums over the files
under it, headers included. --files also lists every file, worst line coverage first.
Standard library only: `make coverage` runs it after lcov (docs/coverage.md).
"""
import os
import sys

KEYS = ("LF", "LH", "BRF", "BRH")


def read(path):
    """{source path: {LF, LH, BRF, BRH}} for each SF record of the tracefile. A record without
    the summary lines (lcov --capture writes none) is counted from its DA and BRDA lines; a file
    with two records (one per object that compiled it, not merged) is refused."""
    files, cur, seen = {}, None, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("SF:"):
                if line[3:] in files:
                    raise SystemExit("coverage_report: %s has two records for %s; merge it first "
                                     "(lcov --extract or lcov -a)" % (path, line[3:]))
                cur = files[line[3:]] = dict.fromkeys(KEYS, 0)
                seen = {"LF": 0, "LH": 0, "BRF": 0, "BRH": 0}
                counted = dict.fromkeys(KEYS, 0)
            elif line == "end_of_record" and cur is not None:
                for k in KEYS:
                    if not seen[k]:
                        cur[k] = counted[k]
                cur = None
            elif cur is not None and ":" in line:
                key, _, value = line.partition(":")
                if key in KEYS:
                    cur[key] = int(value)
                    seen[key] = 1
                elif key == "DA":
                    counted["LF"] += 1
                    counted["LH"] += int(value.split(",")[1]) > 0
                elif key == "BRDA":
                    taken = value.split(",")[3]
                    counted["BRF"] += 1
                    counted["BRH"] += taken not in ("-", "0")
    return files


def module_of(source):
    """'augment' for .../libbarlow/augment/augment.c; None outside libbarlow/<module>/."""
    parts = os.path.normpath(source).split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i - 1] == "libbarlow" and i + 1 < len(parts):
            return parts[i]
    return None


def pct(hit, found):
    return "-" if found == 0 else "%.1f" % (100.0 * hit / found)


def row(name, c):
    return "%-9s %7s %9s %9s %7s %9s %9s" % (
        name, pct(c["LH"], c["LF"]), "%d" % c["LH"], "%d" % c["LF"],
        pct(c["BRH"], c["BRF"]), "%d" % c["BRH"], "%d" % c["BRF"])


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    files = read(args[0])
    modules, total = {}, dict.fromkeys(KEYS, 0)
    per_file = []
    for source, c in files.items():
        mod = module_of(source)
        if mod is None:
            continue
        m = modules.setdefault(mod, dict.fromkeys(KEYS, 0))
        for k in KEYS:
            m[k] += c[k]
            total[k] += c[k]
        per_file.append((source, c))
    if not modules:
        print("coverage_report: no libbarlow/<module>/ file in %s" % args[0], file=sys.stderr)
        return 1
    head = "%-9s %7s %9s %9s %7s %9s %9s" % ("module", "lines%", "hit", "lines", "branch%", "hit", "branches")
    print(head)
    for mod in sorted(modules):
        print(row(mod, modules[mod]))
    print(row("total", total))
    if "--files" in argv:
        print()
        print("%-45s %7s %11s %7s" % ("file", "lines%", "hit/lines", "branch%"))
        per_file.sort(key=lambda fc: (fc[1]["LH"] / fc[1]["LF"]) if fc[1]["LF"] else 1.0)
        for source, c in per_file:
            rel = source[source.rfind("libbarlow" + os.sep):]
            print("%-45s %7s %11s %7s" % (rel, pct(c["LH"], c["LF"]), "%d/%d" % (c["LH"], c["LF"]),
                                          pct(c["BRH"], c["BRF"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
