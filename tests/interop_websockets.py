#!/usr/bin/env python3
"""Interoperability: Python's websockets library (Debian python3-websockets),
a client nobody in this project wrote, talks to the real server.

Usage: interop_websockets.py PATH/TO/server

Starts the server on a free loopback port, runs each check below against it,
then the checks of COMPRESSED_CHECKS against a second server started with
--permessage-deflate (the library offers compression by default), stops
each server by its pid, and prints "N passed, N failed".
"""
import asyncio
import os
import signal
import subprocess
import sys

import websockets

TIMEOUT = 20


async def text_and_binary_are_echoed(uri):
    async with websockets.connect(uri) as ws:
        await ws.send("Hello, world!")
        assert await ws.recv() == "Hello, world!"
        await ws.send("κόσμε 😀")
        assert await ws.recv() == "κόσμε 😀"
        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256))


async def sixteen_mebibytes_come_back_whole(uri):
    payload = os.urandom(16 * 1024 * 1024)
    async with websockets.connect(uri, max_size=None) as ws:
        await ws.send(payload)
        assert await ws.recv() == payload


async def fragmented_message_comes_back_whole(uri):
    async with websockets.connect(uri) as ws:
        await ws.send(iter(["frag", "ment", "ed"]))
        assert await ws.recv() == "fragmented"


async def ping_gets_a_pong(uri):
    async with websockets.connect(uri) as ws:
        pong = await ws.ping(b"are you there?")
        await asyncio.wait_for(pong, TIMEOUT)


async def close_status_and_reason_are_echoed(uri):
    ws = await websockets.connect(uri)
    await ws.close(code=4000, reason="done for today")
    assert ws.close_code == 4000, ws.close_code
    assert ws.close_reason == "done for today", ws.close_reason


async def clean_close_after_many_messages(uri):
    async with websockets.connect(uri) as ws:
        for i in range(1000):
            await ws.send(f"message {i}")
        for i in range(1000):
            assert await ws.recv() == f"message {i}"
    assert ws.close_code == 1000, ws.close_code


async def http_status_of(uri, request):
    """Sends a raw request and returns the response's status line."""
    host, port = uri[len("ws://"):].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return status


async def plain_http_request_is_refused_with_400(uri):
    status = await http_status_of(uri, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 "), status


async def refused_handshake_is_reported_as_400(uri):
    """A second, contradicting Sec-WebSocket-Version makes the request
    malformed: the library reports our 400 as a refused handshake."""
    try:
        async with websockets.connect(uri, extra_headers={"Sec-WebSocket-Version": "8"}):
            pass
    except websockets.exceptions.InvalidStatusCode as error:
        assert error.status_code == 400, error.status_code
        return
    raise AssertionError("a handshake with two versions was accepted")


async def compression_is_agreed_and_messages_echo(uri):
    """The library's default offer, as any of its users would make it."""
    async with websockets.connect(uri, max_size=None) as ws:
        agreed = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        assert agreed.startswith("permessage-deflate"), f"agreed: {agreed!r}"
        for message in ["Hello, world!", "κόσμε 😀" * 1000, bytes(range(256)) * 64, "", b""]:
            await ws.send(message)
            echo = await ws.recv()
            assert echo == message, f"sent {len(message)} bytes, got {len(echo)}"


async def sixteen_mebibytes_come_back_whole_compressed(uri):
    payload = os.urandom(8 * 1024 * 1024) + bytes(8 * 1024 * 1024)
    async with websockets.connect(uri, max_size=None) as ws:
        await ws.send(payload)
        assert await ws.recv() == payload


async def many_compressed_messages_in_a_row(uri):
    async with websockets.connect(uri) as ws:
        for i in range(1000):
            await ws.send(f"message {i} " * (i % 50))
        for i in range(1000):
            assert await ws.recv() == f"message {i} " * (i % 50)
    assert ws.close_code == 1000, ws.close_code


COMPRESSED_CHECKS = [
    compression_is_agreed_and_messages_echo,
    sixteen_mebibytes_come_back_whole_compressed,
    fragmented_message_comes_back_whole,
    many_compressed_messages_in_a_row,
]

CHECKS = [
    text_and_binary_are_echoed,
    sixteen_mebibytes_come_back_whole,
    fragmented_message_comes_back_whole,
    ping_gets_a_pong,
    close_status_and_reason_are_echoed,
    clean_close_after_many_messages,
    plain_http_request_is_refused_with_400,
    refused_handshake_is_reported_as_400,
]


def start_server(path, *options):
    server = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", *options],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "Listening on ws://127.0.0.1:PORT ..."
    address = line.split("ws://")[1].split()[0]
    return server, "ws://" + address


async def run_checks(uri, checks, suffix=""):
    passed = failed = 0
    for check in checks:
        try:
            await asyncio.wait_for(check(uri), TIMEOUT)
            print(f"PASS {check.__name__}{suffix}")
            passed += 1
        except Exception as error:  # report every failure, then go on
            print(f"FAIL {check.__name__}{suffix}: {error!r}")
            failed += 1
    return passed, failed


def main():
    passed = failed = 0
    for options, checks, suffix in [((), CHECKS, ""),
                                    (("--permessage-deflate",), COMPRESSED_CHECKS,
                                     " (--permessage-deflate)")]:
        server, uri = start_server(sys.argv[1], *options)
        try:
            print(f"websockets {websockets.__version__} against {uri} {' '.join(options)}")
            counts = asyncio.run(run_checks(uri, checks, suffix))
            passed, failed = passed + counts[0], failed + counts[1]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
