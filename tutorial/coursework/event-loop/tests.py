"""Grader checks for the event-loop project (see BRIEF.md). The server is
started with --event-loop for every check; each says what it did, what it
expected and what came back."""
import glob
import os
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time

from test_steps import TIMEOUT, Client, expect, show

SERVER_OPTIONS = ["--event-loop"]
# The folder with the project's Makefile and tests/ (the top folder).
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def threads_of(server):
    with open(f"/proc/{server.process.pid}/status") as status:
        return int(re.search(r"^Threads:\s+(\d+)", status.read(), re.M).group(1))


def echoed(client, did, sent):
    """Reads client's next message and fails unless it is the echo of sent,
    (opcode, payload)."""
    try:
        got = client.read_message()
    except Exception as error:  # a timeout, the end of the connection
        got = None
        said = f"nothing within {TIMEOUT} s ({error or 'timed out'})"
    else:
        said = f"opcode {got[0]}, {show(got[1])}"
    expect(got == sent, did, f"the echo, opcode {sent[0]}, {show(sent[1])}", said)


# The project's suites stop the server with SIGTERM and expect status 0;
# the wrapper passes --event-loop on, and reports a death by SIGTERM as a
# clean exit (any other end, a crash say, is passed on).
WRAPPER = """#!/bin/sh
{server} --event-loop "$@" &
pid=$!
trap 'kill -TERM $pid; wait $pid; status=$?; [ $status -eq 143 ] && status=0; exit $status' TERM
wait $pid
"""


# The folder whose C files are being graded: grade.py sets it before the
# checks run (see its docstring).
GRADED_SOURCE = None


def build_suite(scratch, program):
    """Builds tests/program in scratch, a copy of the project's Makefile and
    test sources with the graded server's .c and .h files: the suites link
    ws.o, which must be the graded ws.c, and nothing is written into the
    graded folder or the project's own."""
    graded = GRADED_SOURCE
    for name in glob.glob(os.path.join(graded, "*.[ch]")):
        shutil.copy(name, scratch)
    for name in ["Makefile", "maintainer.mk"]:
        shutil.copy(os.path.join(PROJECT, name), scratch)
    os.mkdir(os.path.join(scratch, "tests"))
    for name in glob.glob(os.path.join(PROJECT, "tests", "*.[ch]")):
        shutil.copy(name, os.path.join(scratch, "tests"))
    built = subprocess.run(["make", "-s", "-C", scratch, f"tests/{program}"],
                           capture_output=True, text=True)
    expect(built.returncode == 0, f"built tests/{program} in a scratch folder, from the .c and "
           f".h files of {graded} with the Makefile and tests/ of {PROJECT}", "it to build",
           (built.stdout + built.stderr)[-800:])


def run_project_suite(server, program):
    """Builds one of the project's Check suites with the graded ws.c, in a
    scratch folder, and runs it against this binary in --event-loop mode,
    through a small wrapper script."""
    with tempfile.TemporaryDirectory() as scratch:
        build_suite(scratch, program)
        wrapper = os.path.join(scratch, "event-loop-server.sh")
        with open(wrapper, "w") as script:
            script.write(WRAPPER.format(server=server.process.args[0]))
        os.chmod(wrapper, stat.S_IRWXU)
        result = subprocess.run([os.path.join(scratch, "tests", program)], cwd=scratch,
                                env=dict(os.environ, SERVER=wrapper), capture_output=True,
                                text=True, timeout=600)
    summary = re.search(r"Checks: \d+, Failures: \d+, Errors: \d+", result.stdout)
    failures = [line for line in result.stdout.splitlines() if ":F:" in line or ":E:" in line]
    expect(result.returncode == 0, f"ran tests/{program} against ./server --event-loop",
           "every check to pass",
           (summary.group(0) if summary else f"exit status {result.returncode}")
           + "".join(f"\n       {line}" for line in failures[:10])
           + ("" if summary else "\n" + (result.stdout + result.stderr)[-500:]))


def test_the_integration_suite_passes(server):
    run_project_suite(server, "integration_tests")


def test_the_conformance_suite_passes(server):
    run_project_suite(server, "conformance_tests")


def test_one_thread_serves_500_clients(server):
    clients = [Client(server) for _ in range(500)]
    threads = threads_of(server)
    expect(threads == 1, "connected 500 clients and read Threads: in /proc/PID/status",
           "1 thread", f"{threads} threads")
    for i, client in enumerate(clients):
        client.send_frame(1, f"client {i}".encode())
    for i, client in enumerate(clients):
        echoed(client, f"500 clients each sent 'client N'; client {i} read",
               (1, f"client {i}".encode()))
    for client in clients:
        client.close()


def test_a_client_stalled_mid_frame_does_not_block_the_others(server):
    stalled = Client(server)
    stalled.connection.sendall(bytes([0x81, 0x85, 0, 0, 0, 0]) + b"He")  # 2 of 5 bytes
    other = Client(server)
    other.send_frame(2, b"not waiting")
    echoed(other, "client a sent 2 of the 5 bytes of a text frame and stopped; then client b "
           "connected and sent binary 'not waiting'", (2, b"not waiting"))
    stalled.connection.sendall(b"llo")
    echoed(stalled, "client a then sent the frame's last 3 bytes", (1, b"Hello"))


def test_a_client_that_never_reads_does_not_stall_the_others(server):
    greedy = Client(server)
    greedy.connection.setblocking(False)
    payload = bytes(60000)
    header = bytes([0x82, 0xFE]) + len(payload).to_bytes(2, "big") + bytes(4)  # key 0
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
        _, writable, _ = select.select([], [greedy.connection], [], 0.2)
        if not writable:
            break  # the server stopped reading from it: good
        try:
            sent += greedy.connection.send(header + payload)
        except BlockingIOError:
            break
    other = Client(server)
    start = time.monotonic()
    other.send_frame(1, b"still served")
    did = (f"client a sent {sent:,} bytes of 60,000-byte messages for up to 5 s without "
           f"reading its echoes; then client b sent 'still served'")
    echoed(other, did, (1, b"still served"))
    waited = time.monotonic() - start
    expect(waited < 2, did, "the echo within 2 s", f"it after {waited:.1f} s")
    expect(sent < 64 * 1024 * 1024, did, "the server to stop reading from client a before "
           "64 MiB", f"it read all {sent:,} bytes: it buffers without end")
    greedy.connection.close()


# Each hint names the check in BRIEF.md's "What the grader checks", and the
# part of "Things to think about" that helps most.
TESTS = [
    (test_the_integration_suite_passes,
     "BRIEF.md, check 1 of 'What the grader checks', and 'What can you reuse?'"),
    (test_the_conformance_suite_passes,
     "BRIEF.md, check 2 of 'What the grader checks', and 'What can you reuse?'"),
    (test_one_thread_serves_500_clients,
     "BRIEF.md, check 3 of 'What the grader checks', and 'Where does the state go?'"),
    (test_a_client_stalled_mid_frame_does_not_block_the_others,
     "BRIEF.md, check 4 of 'What the grader checks', 'Where does the state go?' and "
     "'Never block'"),
    (test_a_client_that_never_reads_does_not_stall_the_others,
     "BRIEF.md, check 5 of 'What the grader checks', and 'Writing is the hard half'"),
]
