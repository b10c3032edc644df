#!/usr/bin/env python3
"""Makes a student's coursework folder: the server, the briefs and the
graders, and no reference solution.

Usage: handout.py DIR     (a relative DIR is read from GRADE_FROM, see grade.py)

DIR must be empty or new: a student's folder is theirs, and nothing here
overwrites it. The folder has the layout of this repository, so that the
commands of the briefs work there unchanged:

  DIR/server.c ws.c ws.h notifier.c notifier.h   the server, to change
  DIR/Makefile maintainer.mk server.1 web/ tests/  its build and its own tests
  DIR/deploy/ bench/                             nginx in front of it; its benchmark
  DIR/tutorial/Makefile                          make -C tutorial grade / handin
  DIR/tutorial/coursework/                       README, grade.py, each project's
                                                 BRIEF.md and tests.py, and start/:
                                                 the server as handed out (read-only)
  DIR/tutorial/tests/test_steps.py, tools/tutorial.py   what grade.py imports
"""
import glob
import os
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.dirname(HERE)
TOP = os.path.dirname(TUTORIAL)
SOURCES = ["server.c", "ws.c", "ws.h", "notifier.c", "notifier.h"]
# Besides the sources: what the top folder's Makefile needs to build the
# server and its tests (the event-loop grader runs the project's suites), and
# what the briefs send students to: deploy/ (nginx in front of two servers,
# make demo-nginx) and bench/ (make bench, to measure a design).
BUILD_FILES = ["Makefile", "maintainer.mk", "server.1"]
BUILD_FOLDERS = ["web", "tests", "deploy", "bench"]
# Never copied: build products, and what npm installs (make installs it again).
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.o", "*_tests", "node", "loadgen")


def is_solution(name):
    return name.endswith(".patch") or "solution" in name


def copy_project(project, into):
    """A project's folder without anything that looks like a solution."""
    def ignore(folder, names):
        return [name for name in names if is_solution(name) or name == "__pycache__"]
    shutil.copytree(os.path.join(HERE, project), os.path.join(into, project), ignore=ignore)


def tracked_files(top):
    """The files git tracks under top, or None when top is not a git work tree
    (a copy from a tarball): then the folders are copied as they are. Only
    what the repository holds goes out, never a build product or a file a
    teacher left lying about (a solution being tried, say)."""
    try:
        listed = subprocess.run(["git", "-C", top, "ls-files", "-z"], capture_output=True)
    except FileNotFoundError:
        return None
    if listed.returncode != 0:
        return None
    return set(listed.stdout.decode().split("\0")) - {""}


def copy_folder(name, into, tracked):
    """Copies TOP/name into into/name: only its tracked files when there is a
    git repository, else everything but build products."""
    if tracked is None:
        shutil.copytree(os.path.join(TOP, name), os.path.join(into, name), ignore=NOT_COPIED)
        return
    for path in sorted(p for p in tracked if p.startswith(name + "/")):
        os.makedirs(os.path.join(into, os.path.dirname(path)), exist_ok=True)
        shutil.copy(os.path.join(TOP, path), os.path.join(into, path))


def make_handout(folder):
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        sys.exit(f"{folder} exists and is not empty: a handout goes into a new or empty folder "
                 f"(nothing in a student's folder is ever overwritten)")
    os.makedirs(folder, exist_ok=True)
    for name in SOURCES + BUILD_FILES:
        shutil.copy(os.path.join(TOP, name), folder)
    tracked = tracked_files(TOP)
    for name in BUILD_FOLDERS:
        copy_folder(name, folder, tracked)
    coursework = os.path.join(folder, "tutorial", "coursework")
    os.makedirs(coursework)
    for name in ["README.md", "grade.py"]:
        shutil.copy(os.path.join(HERE, name), coursework)
    projects = sorted(os.path.basename(os.path.dirname(path))
                      for path in glob.glob(os.path.join(HERE, "*", "tests.py")))
    for project in projects:
        copy_project(project, coursework)
    start = os.path.join(coursework, "start")
    os.makedirs(start)
    for name in SOURCES:
        shutil.copy(os.path.join(TOP, name), start)
        os.chmod(os.path.join(start, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    shutil.copy(os.path.join(HERE, "handout.mk"), os.path.join(folder, "tutorial", "Makefile"))
    for part, name in [("tests", "test_steps.py"), ("tools", "tutorial.py")]:
        os.makedirs(os.path.join(folder, "tutorial", part))
        shutil.copy(os.path.join(TUTORIAL, part, name), os.path.join(folder, "tutorial", part))
    print(f"{folder}: the server and {len(projects)} projects ({', '.join(projects)}); "
          f"a student starts with tutorial/coursework/README.md")


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    base = os.environ.get("GRADE_FROM") or os.getcwd()
    make_handout(os.path.abspath(os.path.join(base, os.path.expanduser(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
