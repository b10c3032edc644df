#!/usr/bin/env python3
"""What one idle connection costs the server, and where the memory goes.

Usage: python3 tutorial/tools/thread_cost.py [PATH/TO/server] [CONNECTIONS]

Starts the server on a free loopback port, opens 50 connections to warm it
up, reads its resident memory (VmRSS), then opens CONNECTIONS more (default
2,000), each of which completes the handshake, echoes one 2-byte message and
then waits. It reads the memory again, divides what it grew by CONNECTIONS,
and splits it, from /proc/PID/smaps, into thread stacks (the mappings of
THREAD_STACK_SIZE, 128 KiB, one per thread) and the rest (malloc's arenas:
the heap). The server is stopped by its pid. Only Python's standard library
is used; the chapter "What a thread costs" explains the figures.
"""
import os
import re
import resource
import socket
import subprocess
import sys
import time

STACK_KIB = 128  # THREAD_STACK_SIZE in server.c


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


def stacks_and_rest(pid):
    """(KiB resident in thread stacks, in how many, KiB resident elsewhere
    in anonymous memory) from /proc/PID/smaps."""
    stack_kib = stacks = other_kib = 0
    size = name = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Size:":
                size = int(fields[1])
            elif fields[0] == "Rss:" and name == "":
                if size == STACK_KIB:
                    stack_kib += int(fields[1])
                    stacks += 1
                else:
                    other_kib += int(fields[1])
    return stack_kib, stacks, other_kib


def open_connection(port):
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += connection.recv(4096)
    # "hi", masked with the key 01 02 03 04, and its 4-byte echo.
    connection.sendall(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
    echo = b""
    while len(echo) < 4:
        echo += connection.recv(16)
    return connection


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else "./server"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    process = subprocess.Popen([server, "--port", "0", "--quiet"], stdout=subprocess.PIPE)
    port = int(process.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
    try:
        warm = [open_connection(port) for _ in range(50)]
        time.sleep(0.5)
        before = resident_kib(process.pid)
        stack_before, _, other_before = stacks_and_rest(process.pid)
        held = [open_connection(port) for _ in range(count)]
        time.sleep(1.5)
        after = resident_kib(process.pid)
        stack_after, stacks, other_after = stacks_and_rest(process.pid)
        print(f"{count} idle connections: {(after - before) / count:.1f} KiB each")
        print(f"  thread stacks: {(stack_after - stack_before) / count:.1f} KiB each "
              f"({stack_after / stacks:.0f} KiB resident in each of {stacks} stacks)")
        print(f"  the rest (malloc): {(other_after - other_before) / count:.1f} KiB each")
        for connection in warm + held:
            connection.close()
    finally:
        process.terminate()
        process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
