#!/usr/bin/env python3
"""permessage-deflate (RFC 7692) against the real server, started with
--permessage-deflate.

Usage: test_deflate.py PATH/TO/server

Two parts:

- Cases modelled on the Autobahn testsuite's sections 12 and 13, written
  from their public descriptions: compressed text and binary messages of
  16 bytes to 128 KiB, many in a row, plain and fragmented (section 12),
  under each kind of offer a client may make (section 13:
  client_no_context_takeover, server_no_context_takeover, client and server
  window sizes 9 to 15, and several offers at once). Python's websockets is
  the client; every echo is compared with what was sent. Autobahn sends
  1,000 messages per size; we send fewer, so that the suite takes seconds.
- A "zip bomb": a message of a gibibyte of zeros, which compresses to about
  a mebibyte, must be closed with 1009 as soon as it inflates past
  --max-message, without the server's memory growing.

Each server is started on a free loopback port and stopped by its pid.
Prints "N passed, N failed".
"""
import asyncio
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import zlib

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

TIMEOUT = 30
SIZES = [16, 64, 256, 1024, 4096, 16384, 65536, 131072]
TEXT = ("The quick brown fox jumps over the lazy dog. κόσμε 😀 " * 3000)


def start_server(path, *options):
    server = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", "--quiet",
                               "--permessage-deflate", *options],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "Listening on ws://127.0.0.1:PORT ..."
    return server, "ws://" + line.split("ws://")[1].split()[0]


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    return server.wait(timeout=10)


def payloads(kind, size, count, rng):
    """count messages of size bytes: text or binary, 'real' (compressible)
    or random, as Autobahn's 12.1-12.4 use."""
    for i in range(count):
        if kind == "text":
            start = (i * 7) % 1000
            yield TEXT.encode()[start:start + size].decode(errors="ignore")
        elif kind == "binary":
            yield rng.randbytes(size)
        else:  # compressible binary
            yield (TEXT.encode() * (1 + size // len(TEXT)))[i:i + size]


async def echo_messages(uri, factories, kind, fragment=None, count_for=None, expect=None):
    """Opens a connection offering factories, echoes messages of every size,
    and checks every echo and, if given, the agreed extension header."""
    rng = random.Random(7)
    async with websockets.connect(uri, extensions=factories, compression=None,
                                  max_size=None) as ws:
        agreed = ws.response_headers.get("Sec-WebSocket-Extensions")
        assert agreed is not None, "the server did not accept permessage-deflate"
        if expect is not None:
            assert agreed == expect, f"expected {expect!r}, got {agreed!r}"
        for size in SIZES:
            count = count_for(size) if count_for else max(2, min(100, 262144 // size))
            for message in payloads(kind, size, count, rng):
                if fragment:
                    pieces = [message[i:i + fragment] for i in range(0, len(message), fragment)]
                    await ws.send(iter(pieces or [message]))
                else:
                    await ws.send(message)
                echo = await ws.recv()
                assert echo == message, (f"{kind} message of {len(message)} bytes came back "
                                         f"as {len(echo)} bytes, different")


def offer(**parameters):
    return ClientPerMessageDeflateFactory(**parameters)


# Section 12: the default offer, text and binary, real and random data,
# fragmented or not.
SECTION_12 = [
    ("12.1 text messages, 16 B to 128 KiB", dict(kind="text")),
    ("12.2 binary messages (random), 16 B to 128 KiB", dict(kind="binary")),
    ("12.3 compressible binary messages, 16 B to 128 KiB", dict(kind="real")),
    ("12.4 text messages sent in 1 KiB fragments", dict(kind="text", fragment=1024)),
    ("12.5 binary messages sent in 4 KiB fragments", dict(kind="binary", fragment=4096)),
]

# Section 13: each kind of offer, with the response we expect for it.
SECTION_13 = [
    ("13.1 offer with no parameters", [offer(client_max_window_bits=None)],
     "permessage-deflate"),
    ("13.2 client_no_context_takeover",
     [offer(client_no_context_takeover=True, client_max_window_bits=None)],
     "permessage-deflate; client_no_context_takeover"),
    ("13.2 server_no_context_takeover",
     [offer(server_no_context_takeover=True, client_max_window_bits=None)],
     "permessage-deflate; server_no_context_takeover"),
    ("13.2 both no_context_takeover",
     [offer(server_no_context_takeover=True, client_no_context_takeover=True)],
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "client_max_window_bits=12"),
] + [
    (f"13.3 client_max_window_bits={bits}", [offer(client_max_window_bits=bits)],
     f"permessage-deflate; client_max_window_bits={min(bits, 12)}")
    for bits in range(9, 16)
] + [
    (f"13.4 server_max_window_bits={bits}",
     [offer(server_max_window_bits=bits, client_max_window_bits=None)],
     f"permessage-deflate; server_max_window_bits={min(bits, 12)}")
    for bits in range(9, 16)
] + [
    ("13.5 client_no_context_takeover with client_max_window_bits=9",
     [offer(client_no_context_takeover=True, client_max_window_bits=9)],
     "permessage-deflate; client_no_context_takeover; client_max_window_bits=9"),
    ("13.5 server_no_context_takeover with server_max_window_bits=9",
     [offer(server_no_context_takeover=True, server_max_window_bits=9,
            client_max_window_bits=None)],
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
    ("13.6 every parameter, windows of 15",
     [offer(server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=15, client_max_window_bits=15)],
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=12; client_max_window_bits=12"),
    ("13.7 several offers: the first one we accept is taken",
     [offer(server_max_window_bits=9, client_max_window_bits=9),
      offer(client_no_context_takeover=True), offer()],
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
]


async def run_echo_cases(uri):
    results = []
    cases = [(name, [offer()], None, kwargs) for name, kwargs in SECTION_12]
    cases += [(name, factories, expect, dict(kind=kind))
              for name, factories, expect in SECTION_13 for kind in ("text", "binary")]
    for name, factories, expect, kwargs in cases:
        label = name if "kind" not in kwargs or name.startswith("12") else \
            f"{name} ({kwargs['kind']})"
        try:
            await asyncio.wait_for(echo_messages(uri, factories, expect=expect, **kwargs),
                                   TIMEOUT)
            print(f"PASS {label}")
            results.append(True)
        except Exception as error:  # report every failure, then go on
            print(f"FAIL {label}: {error!r}")
            results.append(False)
    return results


# ---- The zip bomb ------------------------------------------------------

def resident_kib(pid):
    """The server's resident memory (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


def client_frame(first_byte, payload):
    """A masked client frame; the mask key 0 leaves the payload as it is."""
    length = len(payload)
    if length < 126:
        header = bytes([first_byte, 0x80 | length])
    elif length < 65536:
        header = bytes([first_byte, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first_byte, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def handshake(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
                 b"\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed during the handshake: {response!r}"
        response += chunk
    head, rest = response.split(b"\r\n\r\n", 1)
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in head, head
    return sock, rest


def close_code(data):
    """The status code of the first close frame in data (server frames are
    not masked), or None if there is none yet."""
    at = 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        size = 2
        if length == 126:
            if at + 4 > len(data):
                return None
            length, size = int.from_bytes(data[at + 2:at + 4], "big"), 4
        elif length == 127:
            if at + 10 > len(data):
                return None
            length, size = int.from_bytes(data[at + 2:at + 10], "big"), 10
        if opcode == 0x8 and at + size + 2 <= len(data):
            return int.from_bytes(data[at + size:at + size + 2], "big")
        at += size + length
    return None


def zip_bomb(path):
    """A gibibyte of zeros, compressed and sent a mebibyte (of zeros) per
    frame, against the default --max-message of 16 MiB."""
    server, uri = start_server(path)
    try:
        port = int(uri.rsplit(":", 1)[1])
        sock, received = handshake(port)
        before = resident_kib(server.pid)
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1024 * 1024)
        sent = code = 0
        deadline = time.time() + TIMEOUT
        for i in range(1024):
            data = compressor.compress(zeros)
            if i == 1023:
                data += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
            first_byte = 0x42 if i == 0 else (0x80 if i == 1023 else 0x00)
            try:
                sock.sendall(client_frame(first_byte, data))
            except OSError:
                break  # the server has failed the connection and gone
            sent += len(data)
            if select.select([sock], [], [], 0)[0]:
                chunk = sock.recv(65536)
                received += chunk
                if not chunk or close_code(received) is not None:
                    break
        while close_code(received) is None and time.time() < deadline:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
        code = close_code(received)
        after = resident_kib(server.pid)
        sock.close()
        assert code == 1009, f"expected close 1009, got {code} after {sent} compressed bytes"
        grown = after - before
        assert grown < 8 * 1024, f"expected the server to grow by less than 8 MiB, it grew by " \
                                 f"{grown} KiB ({before} -> {after})"
        print(f"    ({sent} compressed bytes sent before the close; server RSS {before} KiB "
              f"before, {after} KiB after)")
    finally:
        status = stop_server(server)
    assert status == 0, f"the server exited with status {status}"


def main():
    path = sys.argv[1]
    results = []
    server, uri = start_server(path)
    try:
        print(f"websockets {websockets.__version__} against {uri}")
        results += asyncio.run(run_echo_cases(uri))
    finally:
        status = stop_server(server)
    name = "the server exits with status 0 after the echo cases"
    print(f"{'PASS' if status == 0 else 'FAIL'} {name}" + ("" if status == 0 else f": {status}"))
    results.append(status == 0)
    name = "a compressed gibibyte of zeros is closed with 1009, and memory does not grow"
    try:
        zip_bomb(path)
        print(f"PASS {name}")
        results.append(True)
    except Exception as error:
        print(f"FAIL {name}: {error!r}")
        results.append(False)
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
