#!/usr/bin/env python3
"""What one idle connection costs the server, and where the memory goes.

Usage: python3 tutorial/tools/thread_cost.py [--crowd | --loadgen] [--log] [PATH/TO/server]
                                              [CONNECTIONS]

Starts the server on a free loopback port (with --quiet, unless --log),
opens 50 connections to warm it up (not with --loadgen, which counts what
the first connections bring in too), reads its resident memory (VmRSS),
then opens CONNECTIONS more (default 2,000), each of which completes the
handshake, echoes one 2-byte message and then waits. It reads the memory
again, divides what it grew by CONNECTIONS, and splits it, from
/proc/PID/smaps, into thread stacks (the mappings of THREAD_STACK_SIZE,
128 KiB, one per thread), malloc's arenas (every other anonymous mapping,
so the server's spare request buffers too), the main heap ([heap]) and the
pages of libraries. The connections open one after another; with --crowd,
all their handshakes are sent before any answer is read, as when a crowd
of clients comes at once; with --loadgen, bench/loadgen (make
bench/loadgen) opens them as fast as it can and keeps them talking, each
echoing a message every second, as in make bench's row of idle
connections. The server is stopped by its pid. Only Python's standard
library is used; the chapters "What a thread costs" and "Ten thousand at
once" explain the figures.
"""
import os
import re
import resource
import socket
import subprocess
import sys
import time

STACK_KIB = 128  # THREAD_STACK_SIZE in server.c
LOADGEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "loadgen")


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


def resident_by_kind(pid):
    """KiB resident in each kind of mapping, from /proc/PID/smaps, and how
    many thread stacks there are."""
    kib = {"stacks": 0, "arenas": 0, "heap": 0, "libraries": 0}
    stacks = 0
    size = name = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Size:":
                size = int(fields[1])
            elif fields[0] == "Rss:":
                if name == "" and size == STACK_KIB:
                    kind = "stacks"
                    stacks += 1
                elif name == "":
                    kind = "arenas"
                elif name == "[heap]":
                    kind = "heap"
                elif name.startswith("/"):
                    kind = "libraries"
                else:
                    continue
                kib[kind] += int(fields[1])
    return kib, stacks


def send_handshake(port):
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n")
    return connection


def finish_connection(connection):
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
    arguments = sys.argv[1:]
    crowd = "--crowd" in arguments
    loadgen = "--loadgen" in arguments
    log = "--log" in arguments
    arguments = [a for a in arguments if a not in ("--crowd", "--loadgen", "--log")]
    server = arguments[0] if arguments else "./server"
    count = int(arguments[1]) if len(arguments) > 1 else 2000
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command = [server, "--port", "0", "--max-connections", str(count + 100)]
    process = subprocess.Popen(command + ([] if log else ["--quiet"]), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    port = int(process.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
    try:
        warm = [] if loadgen else [finish_connection(send_handshake(port)) for _ in range(50)]
        time.sleep(0.5)
        before = resident_kib(process.pid)
        kinds_before, _ = resident_by_kind(process.pid)
        held = []
        if loadgen:
            talking = subprocess.Popen([LOADGEN, "hold", "--port", str(port), "--connections",
                                        str(count), "--threads", "2", "--seconds", "12"],
                                       stdout=subprocess.DEVNULL)
            time.sleep(8.5)  # then each connection has echoed a few messages
        elif crowd:
            held = [send_handshake(port) for _ in range(count)]
            for connection in held:
                finish_connection(connection)
        else:
            held = [finish_connection(send_handshake(port)) for _ in range(count)]
        time.sleep(1.5)
        after = resident_kib(process.pid)
        kinds_after, stacks = resident_by_kind(process.pid)
        print(f"{count} idle connections: {(after - before) / count:.1f} KiB each")
        grown = {kind: (kinds_after[kind] - kinds_before[kind]) / count for kind in kinds_after}
        print(f"  thread stacks: {grown['stacks']:.1f} KiB each "
              f"({kinds_after['stacks'] / stacks:.0f} KiB resident in each of {stacks} stacks)")
        print(f"  malloc: {grown['arenas']:.1f} KiB each in the threads' arenas, "
              f"{grown['heap']:.1f} in the main heap")
        print(f"  libraries: {grown['libraries']:.1f} KiB each")
        for connection in warm + held:
            connection.close()
        if loadgen:
            talking.wait()
    finally:
        process.terminate()
        process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
