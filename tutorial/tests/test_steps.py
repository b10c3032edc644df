#!/usr/bin/env python3
"""The tests of each tutorial step, using nothing but Python's standard library.

Usage: test_steps.py N PATH/TO/server

Runs every test that applies to step N against that step's server (each test
says from which step on, and until which step, it holds), and prints
"N passed, N failed". A step's tests only use what the step has built: the
TCP server of step 1 is tested with a plain socket.
"""
import base64
import contextlib
import hashlib
import os
import select
import socket
import struct
import subprocess
import sys
import time

TIMEOUT = 5
TESTS = []


def step_test(since, until=99):
    """Registers a test for steps since..until (inclusive)."""
    def register(function):
        TESTS.append((since, until, function))
        return function
    return register


# ==== The server under test =================================================

class Server:
    """Starts the step's server on a free loopback port; stops it by pid."""

    def __init__(self, path, step, options=()):
        # Step 1 takes the port as its only argument; options come in step 2.
        arguments = ["0"] if step == 1 else ["--port", "0", *options]
        # From step 11 on the server logs each connection on stderr: not here.
        self.process = subprocess.Popen([path] + arguments, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        line = self.read_line()
        self.port = int(line.rsplit(b":", 1)[1].split()[0])

    def read_line(self, timeout=TIMEOUT):
        """A line the server printed, or b"" if none came in time."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline() if ready else b""

    def connect(self):
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=TIMEOUT)
        self.process.stdout.close()


def read_until_closed(connection):
    data = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def http_exchange(server, request):
    connection = server.connect()
    connection.sendall(request)
    response = read_until_closed(connection)
    connection.close()
    return response


# ==== A tiny WebSocket client ===============================================

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade_request(key=KEY, version="13", extra_headers=""):
    return (f"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra_headers}\r\n").encode()


def mask(payload, key):
    """RFC 6455 §5.3: XOR with the key, repeated; as one big integer, for speed."""
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[:len(payload)]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(len(payload), "big")


def expected_accept(key=KEY):
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


class Client:
    def __init__(self, server, extra_headers=""):
        """Connects and completes the handshake; extra_headers are added to
        the request ("Name: value\r\n" each), and self.response keeps the
        server's answer."""
        self.connection = server.connect()
        self.connection.sendall(upgrade_request(extra_headers=extra_headers))
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.connection.recv(1)
            assert chunk, "connection closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101 "), response
        self.response = response
        self.buffer = b""

    def send_frame(self, opcode, payload, fin=True, masked=True, rsv=0):
        first = (0x80 if fin else 0) | rsv << 4 | opcode
        mask_bit = 0x80 if masked else 0
        if len(payload) < 126:
            header = struct.pack("!BB", first, mask_bit | len(payload))
        elif len(payload) < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, len(payload))
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, len(payload))
        if masked:
            key = os.urandom(4)
            payload = mask(payload, key)
            header += key
        self.connection.sendall(header + payload)

    def read_exactly(self, count):
        while len(self.buffer) < count:
            chunk = self.connection.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self):
        """(fin, opcode, payload) of the server's next frame."""
        first, second = self.read_exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.read_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.read_exactly(8))[0]
        assert not second & 0x80, "a server must not mask its frames"
        return bool(first & 0x80), first & 0x0F, self.read_exactly(length)

    def read_message(self):
        """(opcode, payload) of the next whole message, however many frames."""
        fin, opcode, payload = self.read_frame()
        while not fin:
            fin, continuation, more = self.read_frame()
            assert continuation == 0, f"expected a continuation frame, got opcode {continuation}"
            payload += more
        return opcode, payload

    def expect_close(self, code):
        fin, opcode, payload = self.read_frame()
        assert opcode == 8, f"expected a close frame, got opcode {opcode}"
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        assert got == code, f"expected close code {code}, got {got}"
        assert read_until_closed(self.connection) == b"", "bytes after the close frame"
        return payload[2:]

    def close(self):
        self.connection.close()


def close_frame(code, reason=b""):
    return struct.pack("!H", code) + reason


# ==== Chapter 1-2: a TCP server, one thread per client ======================

@step_test(1, 3)
def test_echoes_one_read_then_hangs_up(server):
    connection = server.connect()
    connection.sendall(b"hello\n")
    assert connection.recv(100) == b"hello\n"
    assert read_until_closed(connection) == b""


@step_test(1, 2)
def test_second_client_waits_while_the_first_is_silent(server):
    """Without threads, one silent client holds up everyone else."""
    silent = server.connect()
    time.sleep(0.1)
    waiting = server.connect()
    waiting.sendall(b"me too\n")
    ready, _, _ = select.select([waiting], [], [], 0.5)
    assert not ready, "the second client was served while the first one was silent"
    silent.sendall(b"first\n")
    assert silent.recv(100) == b"first\n"
    assert waiting.recv(100) == b"me too\n"


@step_test(2)
def test_help_lists_the_options(server):
    path = server.process.args[0]
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert help_text.returncode == 0 and "--port" in help_text.stdout, help_text
    bad = subprocess.run([path, "--port", "70000"], capture_output=True, timeout=TIMEOUT)
    assert bad.returncode == 2, bad.returncode


@step_test(3)
def test_silent_client_does_not_hold_up_others(server, step):
    silent = server.connect()
    time.sleep(0.1)
    other = server.connect()
    if step < 4:
        other.sendall(b"me too\n")
        assert other.recv(100) == b"me too\n"
    else:
        other.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert other.recv(100).startswith(b"HTTP/1.1 400 ")
    silent.close()


# ==== Chapter 3-4: the HTTP request and the opening handshake ===============

@step_test(4)
def test_plain_get_gets_400_with_a_reason(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
    assert b"Content-Type: text/plain" in response and b"not a WebSocket request" in response


@step_test(4)
def test_header_block_over_8_KiB_gets_431(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 431 "), response[:80]


@step_test(4)
def test_malformed_request_line_gets_400(server):
    response = http_exchange(server, b"HELLO\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 "), response


@step_test(5)
def test_handshake_gets_101_with_the_right_accept_key(server):
    connection = server.connect()
    connection.sendall(upgrade_request())
    response = connection.recv(1000)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), response
    assert f"Sec-WebSocket-Accept: {expected_accept()}\r\n".encode() in response, response
    assert expected_accept() == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    connection.close()


@step_test(5)
def test_version_8_gets_426_naming_version_13(server):
    response = http_exchange(server, upgrade_request(version="8"))
    assert response.startswith(b"HTTP/1.1 426 "), response
    assert b"Sec-WebSocket-Version: 13\r\n" in response


@step_test(5)
def test_bad_key_gets_400(server):
    response = http_exchange(server, upgrade_request(key="tooshort"))
    assert response.startswith(b"HTTP/1.1 400 "), response


# ==== Chapter 5-6: reading frames, writing frames, the notifier =============

@step_test(6, 6)
def test_server_prints_each_message(server):
    client = Client(server)
    client.send_frame(1, b"Hello")
    line = server.read_line()
    assert line == b"received a text message of 5 bytes: Hello\n", line
    client.send_frame(2, b"\x00\x01\x02")
    assert server.read_line().startswith(b"received a binary message of 3 bytes")
    client.close()


@step_test(7)
def test_text_and_binary_are_echoed(server):
    client = Client(server)
    client.send_frame(1, "Hello, κόσμε".encode())
    assert client.read_message() == (1, "Hello, κόσμε".encode())
    payload = os.urandom(1000)
    client.send_frame(2, payload)
    assert client.read_message() == (2, payload)
    client.close()


@step_test(7)
def test_close_status_and_reason_are_echoed(server):
    client = Client(server)
    client.send_frame(8, close_frame(1000, b"bye"))
    assert client.expect_close(1000) == b"bye"


# ==== Chapter 7: control frames =============================================

@step_test(8)
def test_ping_gets_a_pong_with_the_same_payload(server):
    client = Client(server)
    client.send_frame(9, b"are you there?")
    assert client.read_frame() == (True, 10, b"are you there?")
    client.send_frame(10, b"unsolicited pong")  # ignored
    client.send_frame(1, b"still here")
    assert client.read_message() == (1, b"still here")
    client.close()


@step_test(8)
def test_empty_close_gets_an_empty_close(server):
    client = Client(server)
    client.send_frame(8, b"")
    fin, opcode, payload = client.read_frame()
    assert (opcode, payload) == (8, b""), (opcode, payload)
    client.close()


# ==== Chapter 8: messages larger than the buffer ============================

@step_test(9)
def test_message_far_larger_than_4_KiB_is_echoed(server):
    client = Client(server)
    payload = os.urandom(1024 * 1024)
    client.send_frame(2, payload)
    assert client.read_message() == (2, payload)
    client.close()


@step_test(9)
def test_fragmented_message_with_a_ping_inside_is_echoed(server):
    client = Client(server)
    client.send_frame(1, b"frag", fin=False)
    client.send_frame(9, b"ping")
    client.send_frame(0, b"ment", fin=False)
    client.send_frame(0, b"ed", fin=True)
    message = b""
    pongs = 0
    while True:
        fin, opcode, payload = client.read_frame()
        if opcode == 10:
            pongs += 1
            continue
        message += payload
        if fin:
            break
    assert (message, pongs) == (b"fragmented", 1), (message, pongs)
    client.close()


# ==== Chapter 9: trust nothing ==============================================

@step_test(10)
def test_protocol_errors_get_their_close_codes(server):
    cases = [
        (dict(opcode=1, payload=b"hi", masked=False), 1002),  # unmasked
        (dict(opcode=1, payload=b"hi", rsv=4), 1002),  # reserved bit
        (dict(opcode=3, payload=b"hi"), 1002),  # reserved opcode
        (dict(opcode=0, payload=b"hi"), 1002),  # continuation without a start
        (dict(opcode=1, payload=b"\xed\xa0\x80"), 1007),  # a UTF-16 surrogate
        (dict(opcode=8, payload=close_frame(999)), 1002),  # invalid close code
        (dict(opcode=8, payload=b"\x03"), 1002),  # 1-byte close payload
    ]
    for frame, code in cases:
        client = Client(server)
        client.send_frame(**frame)
        client.expect_close(code)


# ==== Chapter 12: surviving the real world =================================

@contextlib.contextmanager
def restarted_with(server, *options):
    """Stops the test's server (run_tests stopping it again does nothing),
    starts the same binary with options for the body of the with, and stops
    it after."""
    server.stop()
    own = Server(server.process.args[0], 11, options)
    try:
        yield own
    finally:
        own.stop()


@step_test(11)
def test_request_that_never_ends_gets_408(server):
    with restarted_with(server, "--handshake-timeout", "1") as own:
        connection = own.connect()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        response = read_until_closed(connection)
        assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), response


@step_test(11)
def test_message_over_the_limit_gets_1009_from_its_header(server):
    with restarted_with(server, "--max-message", "1000") as own:
        client = Client(own)
        # A header announcing 1001 bytes, and none of them.
        client.connection.sendall(struct.pack("!BBH", 0x82, 0x80 | 126, 1001) + b"\0\0\0\0")
        client.expect_close(1009)


@step_test(11)
def test_other_origins_get_403(server):
    with restarted_with(server, "--allow-origin", "http://good.example") as own:
        Client(own, extra_headers="Origin: http://good.example\r\n").close()
        response = http_exchange(own, upgrade_request(extra_headers="Origin: http://evil.example\r\n"))
        assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n"), response


@step_test(11)
def test_idle_client_is_pinged_then_closed_with_1001(server):
    with restarted_with(server, "--ping-interval", "1") as own:
        client = Client(own)
        fin, opcode, payload = client.read_frame()
        assert opcode == 9, f"expected a ping, got opcode {opcode}"
        client.expect_close(1001)  # we never answered


@step_test(11)
def test_client_over_the_limit_gets_503(server):
    with restarted_with(server, "--max-connections", "1") as own:
        first = Client(own)
        response = http_exchange(own, upgrade_request())
        assert response.startswith(b"HTTP/1.1 503 "), response
        assert b"\r\nRetry-After: " in response, response
        first.close()


@step_test(11)
def test_sigterm_closes_with_1001_and_exits_0(server):
    client = Client(server)
    client.send_frame(1, b"before the signal")
    assert client.read_message() == (1, b"before the signal")
    server.process.terminate()
    fin, opcode, payload = client.read_frame()
    assert (opcode, payload[:2]) == (8, struct.pack("!H", 1001)), (opcode, payload)
    client.send_frame(8, close_frame(1001))
    assert read_until_closed(client.connection) == b""
    assert server.process.wait(timeout=TIMEOUT) == 0, "the server did not exit with status 0"


# ==== Chapter 13: seeing the frames, and a page for the browser ============

@step_test(12)
def test_trace_draws_the_rfc_hello_in_both_directions(server):
    server.stop()
    path = server.process.args[0]
    process = subprocess.Popen([path, "--port", "0", "--quiet", "--trace"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(process.stdout.readline().rsplit(b":", 1)[1].split()[0])
        connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        connection.sendall(upgrade_request())
        response = b""
        while b"\r\n\r\n" not in response:
            response += connection.recv(1)
        # RFC 6455 §5.7: "Hello", masked with 37 fa 21 3d.
        connection.sendall(bytes.fromhex("818537fa213d7f9f4d5158"))
        assert connection.recv(7) == b"\x81\x05Hello"
        connection.close()
    finally:
        process.terminate()
        trace = process.communicate(timeout=TIMEOUT)[1].decode()
    for line in ["thread 1 >> HTTP/1.1 101 Switching Protocols",
                 'thread 1 << FIN=1 RSV=000 opcode=1 (text) MASK=1 key=37fa213d length=5 (7-bit) "Hello"',
                 'thread 1 >> FIN=1 RSV=000 opcode=1 (text) MASK=0 length=5 (7-bit) "Hello"']:
        assert line in trace.splitlines(), f"no {line!r} in:\n{trace}"


@step_test(12)
def test_client_page_is_served_at_the_root_only_when_asked(server):
    assert http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 400 "), "without --client-page, GET / must stay a 400"
    page = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web",
                        "client.html")
    with restarted_with(server, "--client-page", page) as own:
        response = http_exchange(own, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response[:60]
        assert b"<title>WebSocket echo client</title>" in response
        Client(own).close()  # a WebSocket request is still one


# ==== Chapter 15: a second look ============================================

@step_test(13)
def test_header_with_an_escape_sequence_gets_400(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\x1b]0;pwned\x07\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert b"control character" in response, response


@step_test(13)
def test_refused_clients_do_not_stall_the_accept_loop(server):
    with restarted_with(server, "--max-connections", "1") as own:
        first = Client(own)
        # 50 refused clients that send their request and then read nothing:
        # once, each of them held the accept loop for a tenth of a second.
        refused = []
        for _ in range(50):
            connection = own.connect()
            connection.sendall(upgrade_request())
            refused.append(connection)
        started = time.monotonic()
        late = own.connect()
        late.sendall(upgrade_request())
        ready, _, _ = select.select([late], [], [], 1)
        waited = time.monotonic() - started
        assert ready, f"a client behind 50 refused ones had no answer after {waited:.1f} s"
        for connection in refused + [late]:
            response = read_until_closed(connection)
            assert response.startswith(b"HTTP/1.1 503 ") and response.endswith(b"\n"), response
            connection.close()
        first.close()


# ==== Running them ==========================================================

def run_tests(tests, path, step, label, options=()):
    """Runs each test against a fresh server at path (started with options),
    reports each one, and prints "N passed, N failed". Returns the exit
    status: 0 if all passed."""
    passed = failed = 0
    for test in tests:
        try:
            server = Server(path, step, options)
        except Exception as error:  # the server did not start: every test fails
            print(f"FAIL {label}: {test.__name__}: the server did not start: {error!r}")
            failed += 1
            continue
        try:
            if "step" in test.__code__.co_varnames[:test.__code__.co_argcount]:
                test(server, step)
            else:
                test(server)
            print(f"PASS {label}: {test.__name__}")
            passed += 1
        except Exception as error:  # report every failure, then go on
            print(f"FAIL {label}: {test.__name__}: {error!r}")
            failed += 1
        finally:
            server.stop()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    step = int(sys.argv[1])
    path = os.path.abspath(sys.argv[2])
    tests = [test for since, until, test in TESTS if since <= step <= until]
    return run_tests(tests, path, step, f"step {step}")


if __name__ == "__main__":
    sys.exit(main())
