#!/usr/bin/env python3
"""The frame tracer (--trace): a scripted session, with fixed mask keys, must
produce exactly the transcript in tests/trace_expected.txt (the port in the
Host line aside). Each frame is sent whole and its echo read before the next,
so the transcript does not depend on timing.

Usage: python3 tests/test_trace.py [./server]; prints "N passed, N failed".
"""
import difflib
import os
import socket
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode, payload, key, fin=True, length_form=None):
    """A masked frame; length_form 127 forces the 64-bit form even for a
    short payload (allowed on the wire, if not minimal)."""
    first = (0x80 if fin else 0) | opcode
    if length_form == 127:
        header = struct.pack("!BBQ", first, 0x80 | 127, len(payload))
    elif len(payload) < 126:
        header = struct.pack("!BB", first, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", first, 0x80 | 126, len(payload))
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


def read_frame(sock):
    first, second = read_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exactly(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exactly(sock, 8))[0]
    return first, read_exactly(sock, length)


def start_server(server, log):
    process = subprocess.Popen([server, "--port", "0", "--quiet", "--trace"],
                               stdout=subprocess.PIPE, stderr=log)
    port = int(process.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
    return process, port


def run_session(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(("GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + "\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    steps = [
        # The RFC 6455 §5.7 example: "Hello", masked with 37 fa 21 3d.
        (frame(0x1, b"Hello", bytes.fromhex("37fa213d")), 1),
        # 300 bytes of binary: the 16-bit length form.
        (frame(0x2, bytes(range(256)) + bytes(44), bytes.fromhex("01020304")), 1),
        # A 5-byte message in the 64-bit form: not minimal, but allowed.
        (frame(0x1, "Hi κ".encode(), bytes.fromhex("0a0b0c0d"), length_form=127), 1),
        # A fragmented message, with a ping between its fragments.
        (frame(0x1, b"frag", bytes.fromhex("11223344"), fin=False), 1),
        (frame(0x9, b"tick", bytes.fromhex("55667788")), 1),
        (frame(0x0, b"mented", bytes.fromhex("99aabbcc"), fin=True), 1),
        # The closing handshake: 1000, "bye".
        (frame(0x8, struct.pack("!H", 1000) + b"bye", bytes.fromhex("deadbeef")), 1),
    ]
    for data, answers in steps:
        sock.sendall(data)
        for _ in range(answers):
            read_frame(sock)
    sock.recv(1)  # the end of the stream
    sock.close()


def refused_request(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    while sock.recv(4096):
        pass
    sock.close()


HOSTILE_REQUESTS = [
    # Escape sequences that would clear the operator's screen and set the
    # title of their terminal, if --trace printed them raw (issue 13).
    b"GET /\x1b[2J HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\x1b]0;pwned\x07\r\n\r\n",
    # Bytes above ASCII are allowed in a header value (RFC 9110 §5.5), and
    # 0x9b is a terminal's one-byte "CSI": the trace must show them as \xNN.
    ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: " + KEY + "\r\nSec-WebSocket-Version: 13\r\n").encode()
    + b"X-Name: caf\xc3\xa9 \x9b2J\r\n\r\n" + frame(0x8, struct.pack("!H", 1000), bytes(4)),
]


def hostile_requests(port):
    for request in HOSTILE_REQUESTS:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(request)
        while sock.recv(4096):
            pass
        sock.close()


def raw_transcript(server, session):
    """The trace as bytes, as it would reach the operator's terminal."""
    with tempfile.TemporaryFile() as log:
        process, port = start_server(server, log)
        try:
            session(port)
        finally:
            process.terminate()
            process.wait(timeout=10)
        log.seek(0)
        return log.read()


def check_printable(name, trace):
    unsafe = sorted({byte for byte in trace if (byte < 0x20 and byte != 0x0A) or byte >= 0x7F})
    if unsafe or b"caf\\xc3\\xa9 \\x9b2J" not in trace:
        print(f"FAIL {name}: expected only printable ASCII, with the header shown as "
              f"caf\\xc3\\xa9 \\x9b2J; got bytes {[hex(b) for b in unsafe]} in:")
        print(trace.decode("ascii", "backslashreplace"))
        return False
    print(f"PASS {name}")
    return True


def transcript(server, session):
    return raw_transcript(server, session).decode()


def check(name, got, expected):
    if got == expected:
        print(f"PASS {name}")
        return True
    print(f"FAIL {name}: the trace differs from the expected transcript:")
    sys.stdout.writelines(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                               "expected", "got"))
    return False


def main():
    server = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./server")
    with open(os.path.join(HERE, "trace_expected.txt")) as text:
        expected = text.read()
    session_expected, refusal_expected = expected.split("\n\n")
    results = [
        check("a scripted session is traced frame by frame", transcript(server, run_session),
              session_expected + "\n"),
        check("a refused request is traced", transcript(server, refused_request),
              refusal_expected),
        check_printable("the trace escapes what a request sends, as it does for frames",
                        raw_transcript(server, hostile_requests)),
    ]
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
