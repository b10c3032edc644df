#!/usr/bin/env python3
"""Grades a coursework project, and packs a student's change for hand-in.

Usage:
  grade.py PROJECT [SOURCE]        grade the server whose C files are in SOURCE
                                   (default: the top folder, where the server is)
  grade.py PROJECT --handin FILE   grade a hand-in: FILE (a patch made by --pack)
                                   applied to a clean copy of the starting point
  grade.py PROJECT --pack [SOURCE] write SOURCE's change to the server as it was
                                   handed out (every .c and .h file, new ones too,
                                   and NOTES.md, your answers to what is marked by
                                   hand) into SOURCE/handin-PROJECT.patch

A relative SOURCE or FILE is read from the folder the command was typed in:
"make -C tutorial grade" runs this in tutorial/, so the Makefile passes that
folder on in the environment as GRADE_FROM.

The grader builds every .c file of SOURCE into one program, then runs each
check of PROJECT/tests.py, prints what each did and, when one fails, what it
expected, what came back and where the brief explains it; and ends with a
score line, "broadcast: 4 of 6". It exits 0 only with full marks.

What a project's tests.py may define (the contract between this runner and
each project):

  TESTS = [(function, "BRIEF.md, check 2 of 'What the grader checks'"), ...]
      the checks, in order, each with the hint printed when it fails. Each
      function takes one argument: the running server (or what fixture yields).
      A check fails by raising test_steps.StepFailure (test_steps.expect()
      raises it); any other exception also fails it, said as a sentence.
  SERVER_OPTIONS = ["--event-loop"]
      options the server is started with, after "--host 127.0.0.1 --port 0".
  LIBS = ["-lhiredis"]
      extra link flags, after the server's own (-lssl -lcrypto -lz).
  BUILDS_ON = "broadcast"
      the project starts from the student's own solution of another project
      (the grader says so). A hand-in is still the whole change from the
      server as handed out. The teachers' check proves such a grader against
      the reference solution of that project, then of this one, applied in turn.
  fixture(binary)
      a contextlib.contextmanager: entered once for each check instead of
      starting one server, it yields what the check function receives.

And what the grader sets in tests.py before the checks run:

  GRADED_SOURCE
      the folder whose C files are being graded (a temporary copy for a
      hand-in), for a check that builds more than the server from them.
"""
import contextlib
import difflib
import glob
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TUTORIAL = os.path.dirname(HERE)
TOP = os.path.dirname(TUTORIAL)
sys.path.insert(0, os.path.join(TUTORIAL, "tests"))
import test_steps  # noqa: E402  (the tutorial's small WebSocket client)

# The server as handed out: a handout keeps a copy here; in the repository
# it is the top folder itself.
START = os.path.join(HERE, "start")
SOURCES = ["server.c", "ws.c", "ws.h", "notifier.c", "notifier.h"]
STARTUP_SECONDS = 5
HANDIN_HEADER = "# hand-in of coursework project"


class Server:
    """The built server, started on a free loopback port; stopped by pid.
    Everything it prints goes to a file, so that a full pipe never stops it
    and a server that does not start can be shown saying why."""

    def __init__(self, binary, options=()):
        self.arguments = [binary, "--host", "127.0.0.1", "--port", "0", *options]
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(self.arguments, stdout=self.output,
                                        stderr=subprocess.STDOUT)
        self.port = self.wait_for_port()

    def said(self):
        self.output.seek(0)
        return self.output.read().decode(errors="replace").strip()

    def wait_for_port(self):
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = re.search(r"Listening on \S*:(\d+)", self.said())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        said = self.said()
        status = self.process.returncode
        test_steps.expect(False, f"started {' '.join(self.arguments[1:])}",
                          f"'Listening on ws://127.0.0.1:PORT' within {STARTUP_SECONDS} s",
                          (f"exit status {status}" if status is not None and status >= 0
                           else "no such line") + (f"; it said:\n{indent(said)}" if said
                                                   else "; it printed nothing"))

    def connect(self):
        connection = socket.create_connection(("127.0.0.1", self.port),
                                              timeout=test_steps.TIMEOUT)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                # A server may wait for its clients to close (the top folder's
                # waits up to 5 s); the checks do not grade that.
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def indent(text, limit=1500):
    text = text if len(text) <= limit else "..." + text[-limit:]
    return "\n".join("    " + line for line in text.splitlines())


@contextlib.contextmanager
def one_server(binary, options):
    server = Server(binary, options)
    try:
        yield server
    finally:
        server.stop()
        server.output.close()


# ==== Building ============================================================

def run_program(command, **options):
    """subprocess.run(command), or an exit that says what to install when the
    program itself is missing (cc, patch)."""
    try:
        return subprocess.run(command, **options)
    except FileNotFoundError:
        sys.exit(f"there is no '{command[0]}' program here: install it (on Debian or Ubuntu, "
                 f"apt-get install build-essential patch)")


def server_libraries():
    """The link flags of the server's libraries, from pkg-config."""
    try:
        result = subprocess.run(["pkg-config", "--libs", "libssl", "libcrypto", "zlib"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split()
    except FileNotFoundError:
        pass
    return ["-lssl", "-lcrypto", "-lz"]


def build(source, binary, extra_libs):
    """Builds every .c file of source into binary; (ok, what the compiler said)."""
    sources = sorted(glob.glob(os.path.join(source, "*.c")))
    command = (["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-pthread", "-O2", "-g",
                "-o", binary] + sources + server_libraries() + list(extra_libs))
    result = run_program(command, capture_output=True, text=True)
    return result.returncode == 0, result.stderr


# ==== Running the checks ==================================================

def readable(name):
    return name.removeprefix("test_").replace("_", " ")


def as_sentence(error):
    """An exception a check raised, as something a student can act on."""
    if isinstance(error, test_steps.StepFailure):
        return str(error)
    if isinstance(error, (socket.timeout, TimeoutError)):
        return (f"waited {test_steps.TIMEOUT} s for the server and nothing came "
                f"(it may be stuck, or waiting for something the check never sends)")
    if isinstance(error, ConnectionRefusedError):
        return "the server refused the connection (has it stopped?)"
    if isinstance(error, ConnectionError):
        return f"the server ended the connection abruptly ({error.strerror or error})"
    return f"the check itself stopped with {type(error).__name__}: {error}"


def run_checks(module, label, binary):
    """Runs each check of module against binary; returns (passed, total)."""
    options = getattr(module, "SERVER_OPTIONS", ())
    fixture = getattr(module, "fixture", None)
    checks = module.TESTS
    passed = 0
    for number, (check, hint) in enumerate(checks, 1):
        start = time.monotonic()
        name = f"{label} {number}/{len(checks)}: {readable(check.__name__)}"
        try:
            with (fixture(binary) if fixture else one_server(binary, options)) as subject:
                check(subject)
        except Exception as error:
            print(f"FAIL {name}\n     {as_sentence(error)}\n     hint: see {hint}", flush=True)
            continue
        print(f"PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)
        passed += 1
    return passed, len(checks)


# ==== Projects, starting points and hand-ins ===============================

def projects():
    return sorted(os.path.basename(os.path.dirname(path))
                  for path in glob.glob(os.path.join(HERE, "*", "tests.py")))


def load_project(project):
    path = os.path.join(HERE, project, "tests.py")
    if not os.path.exists(path):
        sys.exit(f"no project '{project}'; the projects are: {', '.join(projects())}")
    spec = importlib.util.spec_from_file_location(f"{project.replace('-', '_')}_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def handed_out():
    """The folder that holds the server as it was handed out."""
    return START if os.path.isdir(START) else TOP


def apply_patch(path, folder, what):
    """Applies the patch at path to folder; exits saying why if it does not."""
    with open(path, "rb") as text:
        result = run_program(["patch", "-p1", "-N", "--no-backup-if-mismatch", "-s", "-d",
                              folder], stdin=text, capture_output=True)
    said = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        sys.exit(f"{what} ({path}) does not apply to the server as it was handed out:\n"
                 f"{indent(said)}")


def where_typed(path):
    """path, read from the folder the command was typed in."""
    base = os.environ.get("GRADE_FROM") or os.getcwd()
    return os.path.abspath(os.path.join(os.path.expanduser(base), os.path.expanduser(path)))


def server_files(folder):
    return sorted(os.path.basename(path) for pattern in ("*.c", "*.h")
                  for path in glob.glob(os.path.join(folder, pattern)))


# The student's answers to the points marked by hand travel with the code.
NOTES = "NOTES.md"


def handin_files(folder):
    """What a hand-in carries from folder: the server's files, and the notes."""
    notes = [NOTES] if os.path.exists(os.path.join(folder, NOTES)) else []
    return server_files(folder) + notes


def changes_files(path):
    """Whether the patch at path changes any file (a hand-in of an unchanged
    server has none: its header only)."""
    with open(path, errors="surrogateescape") as text:
        return any(line.startswith("+++ ") for line in text)


def check_source(source, typed):
    if not os.path.isdir(source):
        sys.exit(f"no folder {source} (SOURCE={typed}, read from "
                 f"{os.environ.get('GRADE_FROM') or os.getcwd()})")
    if not os.path.exists(os.path.join(source, "server.c")):
        found = server_files(source)
        sys.exit(f"{source} has no server.c{' (only ' + ', '.join(found) + ')' if found else ''}:"
                 f" SOURCE must be the folder of your server.c, ws.c, ws.h, notifier.c and "
                 f"notifier.h")


def pack(project, source):
    """Writes source's change to the server as handed out (every .c and .h of
    the top folder) as one patch; returns its path."""
    if not os.path.isdir(START):
        sys.exit("a hand-in is packed in a handout folder (make -C tutorial handout DIR=...), "
                 "which keeps the server as it was handed out to compare with")
    out = os.path.join(source, f"handin-{project}.patch")
    if os.path.exists(out):
        with open(out, errors="surrogateescape") as text:
            if not text.readline().startswith(HANDIN_HEADER):
                sys.exit(f"{out} exists and was not made by this command: move it away first")
    lines = [f"{HANDIN_HEADER} {project}: the change to the server as handed out.\n",
             f"# Grade it with: make -C tutorial grade PROJECT={project} HANDIN=this-file\n"]
    names = sorted(set(handin_files(START)) | set(handin_files(source)))
    for name in names:
        old, new = (read_lines(os.path.join(folder, name)) for folder in (START, source))
        # A file that is new, or gone, is diffed against /dev/null: patch then
        # makes it, or removes it.
        lines += difflib.unified_diff(old or [], new or [],
                                      "/dev/null" if old is None else f"a/{name}",
                                      "/dev/null" if new is None else f"b/{name}")
    changed = sum(1 for line in lines if line.startswith("+++ "))
    # Proved on a copy of the starting point first: only a hand-in that
    # reproduces the student's files takes the place of the last one.
    with tempfile.TemporaryDirectory() as folder:
        packed = os.path.join(folder, "handin.patch")
        with open(packed, "w", errors="surrogateescape") as text:
            text.writelines(lines)
        copy = os.path.join(folder, "start")
        os.mkdir(copy)
        for name in handin_files(START):
            shutil.copy(os.path.join(START, name), copy)
        if changed:
            apply_patch(packed, copy, "the hand-in just packed")
        if not all(read_lines(os.path.join(copy, name)) == read_lines(os.path.join(source, name))
                   for name in names):
            sys.exit("the hand-in does not reproduce your files when applied: please report this")
        shutil.copy(packed, out)
    print(f"{out}: {changed} file(s) changed" + (" (none: nothing to hand in yet)"
                                                 if not changed else ""))
    print(f"check it as your teacher will: make -C tutorial grade PROJECT={project} "
          f"HANDIN={os.path.relpath(out, os.environ.get('GRADE_FROM') or os.getcwd())}")
    return out


def read_lines(path):
    """The lines of path, each ending in a newline, or None if there is no such file."""
    if not os.path.exists(path):
        return None
    # surrogateescape: bytes that are not UTF-8 (a comment in Latin-1) pass
    # through unchanged instead of stopping the packer.
    with open(path, errors="surrogateescape") as text:
        lines = text.readlines()
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


# ==== Main ================================================================

def grade(project, source):
    module = load_project(project)
    base = getattr(module, "BUILDS_ON", None)
    if base:
        print(f"{project} builds on {base}: start from your own {base} solution")
    total = len(module.TESTS)
    with tempfile.TemporaryDirectory() as scratch:
        binary = os.path.join(scratch, "server")
        print(f"building {', '.join(server_files(source))} from {source}", flush=True)
        built, said = build(source, binary, getattr(module, "LIBS", ()))
        if said:
            print(("the compiler said:\n" if built else "the server does not build:\n")
                  + indent(said, 4000))
        module.GRADED_SOURCE = source
        passed = run_checks(module, project, binary)[0] if built else 0
    print(f"{project}: {passed} of {total}" + ("" if built else " (the server does not build)"))
    return 0 if passed == total else 1


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__)
        return 2
    project, rest = argv[1], argv[2:]
    load_project(project)
    if rest[:1] == ["--handin"] and len(rest) == 2:
        handin = where_typed(rest[1])
        if not os.path.isfile(handin):
            sys.exit(f"no hand-in {handin}")
        with tempfile.TemporaryDirectory() as folder:
            for name in SOURCES:
                shutil.copy(os.path.join(handed_out(), name), folder)
            if changes_files(handin):
                apply_patch(handin, folder, "the hand-in")
            else:
                print(f"{handin} changes nothing: grading the server as it was handed out")
            return grade(project, folder)
    if rest[:1] == ["--pack"] and len(rest) <= 2:
        source = where_typed(rest[1]) if len(rest) == 2 else TOP
        check_source(source, rest[1] if len(rest) == 2 else TOP)
        pack(project, source)
        return 0
    if len(rest) > 1 or rest[:1] and rest[0].startswith("-"):
        print(__doc__)
        return 2
    source = where_typed(rest[0]) if rest else TOP
    check_source(source, rest[0] if rest else TOP)
    return grade(project, source)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
