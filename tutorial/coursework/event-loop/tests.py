"""Grader tests for the event-loop project (see BRIEF.md). The server is
started with --event-loop for every test."""
import os
import re
import select
import socket
import stat
import subprocess
import time

from test_steps import Client

SERVER_OPTIONS = ["--event-loop"]
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def threads_of(server):
    status = open(f"/proc/{server.process.pid}/status").read()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


# The project's suites expect the server of chapter 12, which exits with
# status 0 on SIGTERM; a server built on step 10 dies of the signal. The
# wrapper stops the server with SIGTERM when it gets one and reports that
# death as a clean exit; any other end (a crash, say) is passed on.
WRAPPER = """#!/bin/sh
{server} --event-loop "$@" &
pid=$!
trap 'kill -TERM $pid; wait $pid; status=$?; [ $status -eq 143 ] && status=0; exit $status' TERM
wait $pid
"""


def run_project_suite(server, program):
    """Runs one of the project's Check suites against this binary in
    --event-loop mode, through a small wrapper script."""
    subprocess.run(["make", "-s", "-C", PROJECT, "test-programs"], check=True,
                   capture_output=True)
    wrapper = os.path.join(PROJECT, "tutorial", "build", "event-loop-server.sh")
    with open(wrapper, "w") as script:
        script.write(WRAPPER.format(server=server.process.args[0]))
    os.chmod(wrapper, stat.S_IRWXU)
    result = subprocess.run([os.path.join(PROJECT, "tests", program)], cwd=PROJECT,
                            env=dict(os.environ, SERVER=wrapper), capture_output=True,
                            text=True, timeout=600)
    summary = re.search(r"Checks: \d+, Failures: \d+, Errors: \d+", result.stdout)
    assert result.returncode == 0, (summary.group(0) if summary else result.stdout[-500:])


def test_the_integration_suite_passes(server):
    run_project_suite(server, "integration_tests")


def test_the_conformance_suite_passes(server):
    run_project_suite(server, "conformance_tests")


def test_one_thread_serves_500_clients(server):
    clients = [Client(server) for _ in range(500)]
    assert threads_of(server) == 1, f"{threads_of(server)} threads for 500 clients"
    for i, client in enumerate(clients):
        client.send_frame(1, f"client {i}".encode())
    for i, client in enumerate(clients):
        assert client.read_message() == (1, f"client {i}".encode())
    for client in clients:
        client.close()


def test_a_client_stalled_mid_frame_does_not_block_the_others(server):
    stalled = Client(server)
    stalled.connection.sendall(bytes([0x81, 0x85, 0, 0, 0, 0]) + b"He")  # 2 of 5 bytes
    other = Client(server)
    other.send_frame(2, b"not waiting")
    assert other.read_message() == (2, b"not waiting")
    stalled.connection.sendall(b"llo")
    assert stalled.read_message() == (1, b"Hello")


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
    assert other.read_message() == (1, b"still served")
    assert time.monotonic() - start < 2, "the other client waited"
    greedy.connection.close()


TESTS = [
    test_the_integration_suite_passes,
    test_the_conformance_suite_passes,
    test_one_thread_serves_500_clients,
    test_a_client_stalled_mid_frame_does_not_block_the_others,
    test_a_client_that_never_reads_does_not_stall_the_others,
]
