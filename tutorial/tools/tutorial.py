#!/usr/bin/env python3
"""The tutorial's steps: get one, save one, and prove them all.

    tutorial.py step N DIR   put the source of step N in DIR (with a Makefile)
    tutorial.py save N       rewrite steps/NN-*.patch from build/step(N-1) and build/stepN
    tutorial.py check        build and test every step, check every code block in
                             the chapters, and compare the last step with the
                             project's own sources

Steps are stored as a patch series (steps/NN-name.patch): step N is the empty
folder with patches 1..N applied. See tutorial/README.md.
"""
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys

TUTORIAL = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.dirname(TUTORIAL)
STEPS_DIR = os.path.join(TUTORIAL, "steps")
BUILD = os.path.join(TUTORIAL, "build")
# The files a step may contain; the last step must equal the project's own.
SOURCES = ["server.c", "ws.c", "ws.h", "notifier.c", "notifier.h"]


def patches():
    """The patch files, in order: steps/01-tcp-server.patch, ..."""
    return sorted(glob.glob(os.path.join(STEPS_DIR, "[0-9][0-9]-*.patch")))


def step_count():
    return len(patches())


def materialize(n, folder):
    """Writes the source of step n into folder (emptied first)."""
    if not 0 <= n <= step_count():
        sys.exit(f"there is no step {n}: the steps are 1 to {step_count()}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for patch in patches()[:n]:
        with open(patch) as text:
            subprocess.run(["patch", "-s", "-p1", "-d", folder], stdin=text, check=True)
    shutil.copy(os.path.join(TUTORIAL, "step.mk"), os.path.join(folder, "Makefile"))


def unified_diff(old_folder, new_folder):
    """The patch that turns old_folder's sources into new_folder's."""
    lines = []
    for name in SOURCES:
        old_path = os.path.join(old_folder, name)
        new_path = os.path.join(new_folder, name)
        old = open(old_path).readlines() if os.path.exists(old_path) else []
        new = open(new_path).readlines() if os.path.exists(new_path) else []
        if old == new:
            continue
        lines.append(f"diff -ruN a/{name} b/{name}\n")
        lines += difflib.unified_diff(old, new, f"a/{name}", f"b/{name}")
    return "".join(lines)


def save(n):
    """Rewrites patch n from the edited folders build/step(n-1) and build/stepn."""
    old = os.path.join(BUILD, f"step{n - 1:02d}")
    new = os.path.join(BUILD, f"step{n:02d}")
    if n > 1 and not os.path.isdir(old):
        materialize(n - 1, old)
    if n == 1:
        os.makedirs(old, exist_ok=True)
    target = patches()[n - 1]
    with open(target, "w") as out:
        out.write(unified_diff(old, new))
    print(f"wrote {os.path.relpath(target, TUTORIAL)}; later patches may need saving again")


# ==== The check ==============================================================

class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")
        return ok


def build_step(n, folder, tally):
    """Builds step n warning-free (-Werror) with the step's own Makefile."""
    result = subprocess.run(["make", "-s", "-C", folder, "CFLAGS=-O2 -g -Werror"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr)
    return tally.record(result.returncode == 0, f"step {n} builds without warnings")


def test_step(n, folder, tally):
    """Runs the tests of step n (tests/test_steps.py) against its server."""
    result = subprocess.run(
        [sys.executable, os.path.join(TUTORIAL, "tests", "test_steps.py"), str(n),
         os.path.join(folder, "server")], capture_output=True, text=True, timeout=300)
    print(result.stdout, end="")
    counts = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.M)
    if counts is None:
        print(result.stderr)
        tally.record(False, f"step {n}'s tests ran")
        return 0
    tally.passed += int(counts.group(1))
    tally.failed += int(counts.group(2))
    return int(counts.group(1)) + int(counts.group(2))


# A code block in a chapter is preceded by a line naming where it comes from:
#   <!-- step 5: ws.c -->          a file of step 5
#   <!-- file: tests/client.c -->  a file of the project (for the chapter on tests)
MARKER = re.compile(r"<!--\s*(?:step\s+(\d+)|file):\s*([\w./]+)\s*-->")
# and a step's complete change is quoted, as a diff block, after:
#   <!-- patch 5 -->
PATCH_MARKER = re.compile(r"<!--\s*patch\s+(\d+)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(chapter):
    """Yields (line number, language, marker or None, text) for each block."""
    lines = open(chapter).read().split("\n")
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        marker = None
        for back in range(start - 1, max(start - 3, -1), -1):
            found = MARKER.search(lines[back])
            patch = PATCH_MARKER.search(lines[back])
            if found:
                step = int(found.group(1)) if found.group(1) else None
                marker = (step, found.group(2))
                break
            if patch:
                marker = ("patch", int(patch.group(1)))
                break
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        yield start + 1, fence.group(1), marker, "\n".join(body) + "\n"
        i += 1


def check_patch_block(where, step, text, tally, quoted):
    """A diff block must be the whole patch of its step, exactly."""
    patch = open(patches()[step - 1]).read() if 1 <= step <= step_count() else None
    if tally.record(patch == text, f"{where}: not the complete patch of step {step}"):
        quoted.add(step)


def check_chapters(tally):
    """Every C block must name its step and file, and appear there verbatim;
    every step's complete patch must be quoted in some chapter."""
    count = 0
    quoted = set()
    for chapter in sorted(glob.glob(os.path.join(TUTORIAL, "chapters", "*.md"))):
        name = os.path.basename(chapter)
        for line, language, marker, text in code_blocks(chapter):
            where = f"{name}:{line}"
            if language == "diff" and marker and marker[0] == "patch":
                count += 1
                check_patch_block(where, marker[1], text, tally, quoted)
                continue
            if language != "c" and marker is None:
                continue  # shell sessions, captured output, the article's C#
            count += 1
            if not tally.record(marker is not None and marker[0] != "patch",
                                f"{where}: C block without a step marker"):
                continue
            step, file_name = marker
            folder = PROJECT if step is None else os.path.join(BUILD, f"step{step:02d}")
            path = os.path.join(folder, file_name)
            source = open(path).read() if os.path.exists(path) else ""
            origin = file_name if step is None else f"step {step}'s {file_name}"
            tally.record(text in source, f"{where}: block not found in {origin}")
    for step in range(1, step_count() + 1):
        tally.record(step in quoted, f"no chapter quotes the complete patch of step {step}")
    return count


def check_last_step(tally):
    """The last step is the project's own server, byte for byte."""
    last = os.path.join(BUILD, f"step{step_count():02d}")
    for name in SOURCES:
        mine = open(os.path.join(last, name)).read()
        theirs = open(os.path.join(PROJECT, name)).read()
        tally.record(mine == theirs, f"the last step's {name} differs from ../{name}")


def run_project_tests(tally):
    """The project's integration, reliability and conformance suites, against the
    last step."""
    server = os.path.join(BUILD, f"step{step_count():02d}", "server")
    subprocess.run(["make", "-s", "-C", PROJECT, "test-programs"], check=True)
    for program in ["integration_tests", "reliability_tests", "conformance_tests"]:
        result = subprocess.run([os.path.join("tests", program)], cwd=PROJECT,
                                env=dict(os.environ, SERVER=server), capture_output=True,
                                text=True, timeout=600)
        counts = re.search(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", result.stdout)
        if counts is None or result.returncode != 0:
            print(result.stdout + result.stderr)
        ok = counts is not None and result.returncode == 0
        tally.record(ok, f"the project's {program} against the last step")
        if counts:
            print(f"last step: {program}: {counts.group(0)}")


# The reference solutions are written against the core server of this step
# (the end of chapter 9), before chapter 12 adds limits, timeouts and shutdown.
COURSEWORK_STEP = 10


def check_coursework(tally):
    """Each grader must fail on the core server as it is, and pass with its
    reference solution applied."""
    graded = 0
    core = os.path.join(BUILD, f"step{COURSEWORK_STEP:02d}")
    for solution in sorted(glob.glob(os.path.join(TUTORIAL, "coursework", "*", "solution.patch"))):
        project = os.path.basename(os.path.dirname(solution))
        folder = os.path.join(BUILD, f"course-{project}")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for name in SOURCES:
            shutil.copy(os.path.join(core, name), folder)
        grader = [sys.executable, os.path.join(TUTORIAL, "coursework", "grade.py"), project, folder]
        before = subprocess.run(grader, capture_output=True, text=True, timeout=600)
        tally.record(before.returncode != 0,
                     f"coursework {project}: the grader passes the unmodified server")
        with open(solution) as text:
            subprocess.run(["patch", "-s", "-p1", "-d", folder], stdin=text, check=True)
        after = subprocess.run(grader, capture_output=True, text=True, timeout=600)
        if after.returncode != 0:
            print(after.stdout + after.stderr)
        tally.record(after.returncode == 0,
                     f"coursework {project}: the grader fails the reference solution")
        last = [line for line in before.stdout.splitlines() if "passed," in line]
        print(f"coursework {project}: unmodified server: {last[-1] if last else '?'}; "
              f"with the solution: {after.stdout.strip().splitlines()[-1]}")
        graded += 1
    return graded


def check():
    tally = Tally()
    tests = 0
    for n in range(1, step_count() + 1):
        folder = os.path.join(BUILD, f"step{n:02d}")
        materialize(n, folder)
        print(f"== step {n}: {os.path.basename(patches()[n - 1])}")
        if build_step(n, folder, tally):
            tests += test_step(n, folder, tally)
    blocks = check_chapters(tally)
    check_last_step(tally)
    run_project_tests(tally)
    projects = check_coursework(tally)
    print(f"{step_count()} steps, {tests} step tests, {blocks} code blocks, "
          f"{projects} coursework graders checked")
    print(f"total: {tally.passed} passed, {tally.failed} failed")
    return 0 if tally.failed == 0 else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "step":
        materialize(int(argv[2]), argv[3])
        print(f"step {int(argv[2])} is in {argv[3]}: cd there, then make && ./server")
        return 0
    if len(argv) == 3 and argv[1] == "save":
        save(int(argv[2]))
        return 0
    if len(argv) == 2 and argv[1] == "check":
        return check()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
