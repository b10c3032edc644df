#!/usr/bin/env python3
"""Grades a coursework project.

Usage: grade.py PROJECT [SOURCE]

Builds the server from the C files in SOURCE (default: the project's top
folder, where students make their changes), starts it (with the project's
SERVER_OPTIONS, if any) on a free loopback port for each test in
coursework/PROJECT/tests.py, and prints
"N passed, N failed". Exits 0 only when every test passes.
"""
import importlib.util
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TUTORIAL, "tests"))
import test_steps  # noqa: E402  (the tutorial's small WebSocket client and server helper)


def build(source, binary):
    sources = sorted(glob.glob(os.path.join(source, "*.c")))
    command = ["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-pthread", "-O2", "-g",
               "-o", binary] + sources + ["-lcrypto"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"the server does not build:\n{result.stderr}")
    if result.stderr:
        print(f"warnings:\n{result.stderr}")


def load_project(project):
    path = os.path.join(HERE, project, "tests.py")
    if not os.path.exists(path):
        projects = [os.path.basename(os.path.dirname(p))
                    for p in glob.glob(os.path.join(HERE, "*", "tests.py"))]
        sys.exit(f"no project '{project}'; the projects are: {', '.join(sorted(projects))}")
    spec = importlib.util.spec_from_file_location(f"{project}_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    project = argv[1]
    source = os.path.abspath(argv[2] if len(argv) == 3 else os.path.dirname(TUTORIAL))
    module = load_project(project)
    tests = module.TESTS
    binary = os.path.join(TUTORIAL, "build", f"grade-{project}-server")
    os.makedirs(os.path.dirname(binary), exist_ok=True)
    build(source, binary)
    # A finished server takes the options of step 2 on, whatever the step number.
    options = getattr(module, "SERVER_OPTIONS", ())
    return test_steps.run_tests(tests, binary, step=None, label=project, options=options)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
