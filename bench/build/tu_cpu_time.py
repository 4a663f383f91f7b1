#!/usr/bin/env python3
"""CPU seconds to compile translation units in two source trees (docs/testing.md, "Build time").

    /usr/bin/python3 bench/build/tu_cpu_time.py BEFORE_TREE FILE... [--build build]

BEFORE_TREE is another checkout of this repository (e.g. `git worktree add /tmp/before
COMMIT`); FILE is a source path relative to the repository root. Each file is compiled once
in BEFORE_TREE and once in this tree, with the command build/compile_commands.json gives it
(ccache and dependency-file flags removed, output to a temporary file), one compile at a time
under `nice -n 19`. Prints user + system CPU seconds of each compile: CPU time, not wall
time, so that other work on the machine matters less.
"""
import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command_for(entries, tree, source, output):
    entry = entries.get(os.path.join(here, source))
    if entry is None:
        sys.exit(f"tu_cpu_time: {source} is not in compile_commands.json (expected a path "
                 f"relative to {here} of a file the build compiles)")
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    if os.path.basename(args[0]) == "ccache":
        args = args[1:]
    result = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        if arg in ("-MF", "-MT", "-MQ"):
            skip = 1
            continue
        if arg in ("-MD", "-MMD"):
            continue
        if arg == "-I" + here:
            arg = "-I" + tree
        elif arg == os.path.join(here, source):
            arg = os.path.join(tree, source)
        result.append(arg)
    result[result.index("-o") + 1] = output
    return result, entry["directory"]


def cpu_seconds(args, directory):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["nice", "-n", "19"] + args, check=True, cwd=directory)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before_tree")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--build", default=os.path.join(here, "build"))
    options = parser.parse_args()
    database = os.path.join(options.build, "compile_commands.json")
    if not os.path.isfile(database):
        sys.exit(f"tu_cpu_time: {database} not found (configure first: deploy/build.sh)")
    if not os.path.isdir(options.before_tree):
        sys.exit(f"tu_cpu_time: {options.before_tree} is not a directory (expected a checkout)")
    entries = {e["file"]: e for e in json.load(open(database))}
    totals = [0.0, 0.0]
    with tempfile.TemporaryDirectory() as scratch:
        output = os.path.join(scratch, "unit.o")
        for source in options.files:
            seconds = []
            for tree in (os.path.abspath(options.before_tree), here):
                args, directory = command_for(entries, tree, source, output)
                seconds.append(cpu_seconds(args, directory))
            totals = [t + s for t, s in zip(totals, seconds)]
            print(f"{source:45} before {seconds[0]:6.1f} s  after {seconds[1]:6.1f} s", flush=True)
    print(f"{'total':45} before {totals[0]:6.1f} s  after {totals[1]:6.1f} s")


if __name__ == "__main__":
    main()
