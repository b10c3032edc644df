#!/usr/bin/env python3
"""What permessage-deflate costs in memory: the server's resident memory
(VmRSS) per open connection, with and without --permessage-deflate.

Usage: python3 bench/deflate_memory.py [./server] [CONNECTIONS]

For each setting it starts a server on a free loopback port, opens
CONNECTIONS (default 1,000) connections with Python's websockets (which
offers compression by default), sends one 1 KiB text message on each and
waits for its echo (so that both zlib streams of each connection are in
use), then reads the server's VmRSS and divides what it grew by the number
of connections. The server is stopped by its pid. Not part of "make test":
it measures, it asserts nothing.
"""
import asyncio
import re
import signal
import subprocess
import sys

import websockets


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


async def hold_connections(uri, count, pid):
    message = "The quick brown fox jumps over the lazy dog. " * 23  # about 1 KiB
    before = resident_kib(pid)
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(uri, ping_interval=None)
        await ws.send(message)
        assert await ws.recv() == message
        sockets.append(ws)
    await asyncio.sleep(1)
    after = resident_kib(pid)
    agreed = sockets[0].response_headers.get("Sec-WebSocket-Extensions", "(none)")
    await asyncio.gather(*(ws.close() for ws in sockets))
    return before, after, agreed


def measure(server_path, count, options):
    server = subprocess.Popen([server_path, "--port", "0", "--quiet", *options],
                              stdout=subprocess.PIPE, text=True)
    try:
        uri = "ws://" + server.stdout.readline().split("ws://")[1].split()[0]
        return asyncio.run(hold_connections(uri, count, server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main():
    server_path = sys.argv[1] if len(sys.argv) > 1 else "./server"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    for options in [(), ("--permessage-deflate",)]:
        before, after, agreed = measure(server_path, count, options)
        print(f"{' '.join(options) or '(no option)':22} extensions: {agreed:48} "
              f"RSS {before} KiB -> {after} KiB: {(after - before) / count:.1f} KiB "
              f"per connection")


if __name__ == "__main__":
    sys.exit(main())
