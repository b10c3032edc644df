#!/usr/bin/env python3
"""The tests of each tutorial step, using nothing but Python's standard library.

Usage: test_steps.py STEP PATH/TO/server [--only-new]   (STEP: a number or a step's name)

Runs every test that holds for that step against the server (each test says
from which step on, and until which step, it holds), and prints
"N passed, N failed". A step's tests only use what the step has built: the
TCP server of step 1 is tested with a plain socket. "make test STEP=N" in a
step's folder or in your own runs this.

A failing test says what it did, what it expected, what came back, and which
chapter explains it, as a staged tester does:

    FAIL step 9 (accept-key): sent Sec-WebSocket-Key dGhl...; expected ...,
         got ... -- see chapter 4, "Step 9: ..."
"""
import base64
import contextlib
import hashlib
import os
import re
import resource
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import tutorial  # noqa: E402  (the series of steps, and where the chapters show them)

TIMEOUT = 5
TESTS = []


def step_test(since, until=None):
    """Registers a test for the steps since..until (names or numbers,
    inclusive); until None: every later step."""
    def register(function):
        TESTS.append((since, until, function))
        return function
    return register


class StepFailure(Exception):
    """A test found the server doing something else than the step asks."""


def expect(ok, did, expected, got):
    """Fails the test, unless ok, with a sentence a student can act on: what
    the test did, what it expected, what came back."""
    if not ok:
        raise StepFailure(f"{did}; expected {expected}, got {got}")


def show(data, limit=60):
    """Bytes or text as a short, quoted string in which what cannot be printed
    is escaped once, as Python writes it: 'Upgrade: websocket\\r\\n', '\\x00'."""
    text = data.decode("latin-1") if isinstance(data, bytes) else str(data)
    text = text[:limit] + ("..." if len(text) > limit else "")
    return "'" + text.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


# ==== The server under test =================================================

# The step from which the server takes options ("--port 0") rather than a
# bare port number.
FIRST_STEP_WITH_OPTIONS = ["parse-options", "options"]


def number_of(name):
    """The number of the step called name (for a test whose checks change at
    a later step: "if step < number_of('refuse-every-request')")."""
    for step_info in tutorial.series():
        if step_info.name == name:
            return step_info.number
    raise SystemExit(f"a test names a step '{name}' that is not in steps/series")


def takes_only_a_port(step):
    if step is None:
        return False
    for step_info in tutorial.series():
        if step_info.name in FIRST_STEP_WITH_OPTIONS:
            return step < step_info.number
    return False


class Server:
    """Starts the step's server on a free loopback port; stops it by pid."""

    def __init__(self, path, step, options=()):
        # The first steps take the port as their only argument; options
        # come later (a finished server is started with step None).
        arguments = ["0"] if takes_only_a_port(step) else ["--port", "0", *options]
        # What the server prints on stderr (its log, and any complaint) is
        # kept in a file, to show it if the server does not start.
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen([path] + arguments, stdout=subprocess.PIPE,
                                        stderr=self.errors)
        line = self.read_line()
        if b":" not in line:
            self.process.kill()
            self.process.wait()
            self.errors.seek(0)
            said = self.errors.read().decode(errors="replace").strip()
            raise StepFailure(
                f"started {os.path.basename(path)} {' '.join(arguments)}; expected it to print "
                f"'Listening on ...:PORT' within {TIMEOUT} s, got "
                f"{show(line) if line else 'nothing'} (exit status {self.process.returncode}"
                + (f"; it said: {said[-500:]}" if said else "") + ")")
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
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.errors.close()


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


def read_head(connection):
    """What the server sent up to and including the blank line that ends an
    HTTP head, or less if it closed the connection first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


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
            expect(chunk, "sent a WebSocket handshake", "a response ending in a blank line",
                   f"{show(response)} and then the end of the connection")
            response += chunk
        expect(response.startswith(b"HTTP/1.1 101 "), "sent a WebSocket handshake",
               "HTTP/1.1 101 Switching Protocols", show(response))
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
            expect(chunk, f"read {count} bytes from the server", f"{count} bytes",
                   f"{show(self.buffer)} and then the end of the connection")
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
        expect(not second & 0x80, "read a frame from the server",
               "the mask bit clear (RFC 6455 §5.1: a server never masks)", "it set")
        return bool(first & 0x80), first & 0x0F, self.read_exactly(length)

    def read_message(self):
        """(opcode, payload) of the next whole message, however many frames."""
        fin, opcode, payload = self.read_frame()
        while not fin:
            fin, continuation, more = self.read_frame()
            expect(continuation == 0, "read the next frame of a fragmented message",
                   "a continuation frame (opcode 0)", f"opcode {continuation}")
            payload += more
        return opcode, payload

    def expect_close(self, code):
        fin, opcode, payload = self.read_frame()
        expect(opcode == 8, "read the server's next frame", f"a close frame with code {code}",
               f"opcode {opcode}, payload {show(payload)}")
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        expect(got == code, "read the server's close frame", f"close code {code}",
               f"{got}, reason {show(payload[2:])}" if got else "no code")
        rest = read_until_closed(self.connection)
        expect(rest == b"", "read on after the close frame", "the end of the connection",
               show(rest))
        return payload[2:]

    def close(self):
        self.connection.close()


def close_frame(code, reason=b""):
    return struct.pack("!H", code) + reason


@contextlib.contextmanager
def restarted_with(server, *options):
    """Stops the test's server (run_tests stopping it again does nothing),
    starts the same binary with options for the body of the with, and stops
    it after."""
    server.stop()
    own = Server(server.process.args[0], None, options)
    try:
        yield own
    finally:
        own.stop()


# ==== The tests of each step ===============================================

# ==== Steps of r01 ==================================================

# Tests of range r01: old steps 1-3 (a TCP server, options, one thread per client).
# To be pasted into tutorial/tests/test_steps.py after its helpers. They need
# two more standard modules there: re and resource.
#
# The harness's Server must pass the port as the only argument ("0") up to
# the step accept-backoff, and "--port 0" from parse-options on (its
# FIRST_STEP_WITH_OPTIONS names parse-options already).



# Stand-ins until test_steps.py has them (to be removed when pasted).
# ==== Helpers of range r01 ==================================================

# What a client sends when all it wants is an answer: the echo steps send it
# back, and once the server reads HTTP requests it gets "400 Bad Request".
# Either way the client was served.
R01_ANY_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def r01_command(server, *arguments, port=None):
    """The command line that started server, with the port replaced, or
    (arguments given) the server's path with those arguments."""
    command = list(server.process.args)
    if arguments:
        return [command[0], *arguments]
    if port is not None:
        where = command.index("--port") + 1 if "--port" in command else 1
        command[where] = str(port)
    return command


def r01_run(command):
    """Runs a command that should end at once: (exit status, stdout, stderr);
    status None if it was still running after TIMEOUT seconds."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as timeout:
        out = (timeout.stdout or b"").decode(errors="replace")
        return None, out, (timeout.stderr or b"").decode(errors="replace")
    return done.returncode, done.stdout, done.stderr


class r01_Own:
    """A server the test starts itself, its stderr kept in a file."""

    def __init__(self, command):
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.errors)
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT)
        self.line = self.process.stdout.readline() if ready else b""
        if b":" not in self.line:
            said = self.said()
            self.stop()
            expect(False, f"started {' '.join(command[1:])}", "'Listening on ws://HOST:PORT'",
                   f"{show(self.line) if self.line else 'nothing'}; it said {show(said)}")
        self.port = int(self.line.rsplit(b":", 1)[1].split()[0])

    def said(self):
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace")

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.errors.close()


def r01_answer(connection, request=R01_ANY_REQUEST):
    """Sends request and reads until the server hangs up: what came back, or
    b"" if the connection was closed, reset, or silent for TIMEOUT seconds."""
    try:
        connection.sendall(request)
        return read_until_closed(connection)
    except OSError:
        return b""


def r01_outcome(status, said):
    """What a command that should have ended did, in words."""
    if status is None:
        return f"it still running after {TIMEOUT} s"
    return f"exit status {status}, and it said {show(said)}"


def r01_last_line(own):
    lines = own.said().strip().splitlines()
    return show(lines[-1] if lines else "")


def r01_wait_until_said(own, text):
    """What the server has said on stderr once it says text, or after TIMEOUT s."""
    deadline = time.monotonic() + TIMEOUT
    while text not in own.said() and time.monotonic() < deadline:
        time.sleep(0.05)
    return own.said()


def r01_first_free_descriptor(pid):
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def r01_address_space(pid):
    """How many bytes of address space the process has mapped (VmSize)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# ==== Chapter: a TCP server =================================================

@step_test("print-address")
def test_prints_the_port_it_listens_on(server):
    own = r01_Own(r01_command(server))
    try:
        found = re.fullmatch(rb"Listening on ws://127\.0\.0\.1:(\d+) \(press Ctrl\+C to stop\)\n",
                             own.line)
        expect(found and int(found.group(1)) != 0, "started the server on port 0",
               "'Listening on ws://127.0.0.1:PORT (press Ctrl+C to stop)' with the port the "
               "kernel chose", show(own.line))
    finally:
        own.stop()


@step_test("accept-loop", "reuse-address")
def test_hangs_up_on_each_client(server):
    for number in (1, 2):
        connection = server.connect()
        try:
            data = read_until_closed(connection)
        except socket.timeout:
            data = None
        expect(data == b"", f"connected client {number} and sent nothing",
               "the server to accept it and hang up (the end of the connection)",
               f"nothing for {TIMEOUT} s" if data is None else show(data))
        connection.close()


@step_test("say-why-listen-failed")
def test_busy_port_is_refused_with_a_reason(server):
    status, _, said = r01_run(r01_command(server, port=server.port))
    reason = f"server: cannot listen on 127.0.0.1 port {server.port}: Address already in use"
    expect(status == 1 and reason in said,
           f"started a second server on port {server.port}, where the first one listens",
           f"exit status 1 and '{reason}'", r01_outcome(status, said))


@step_test("reuse-address")
def test_restarts_at_once_on_the_same_port(server):
    connection = server.connect()
    # Before echo-once the server hangs up at once; from then on it waits for
    # bytes. Either way it closes first, which leaves the port in TIME_WAIT.
    if not select.select([connection], [], [], 0.2)[0]:
        connection.sendall(R01_ANY_REQUEST)
    read_until_closed(connection)
    connection.close()
    server.stop()
    command = r01_command(server, port=server.port)
    status, out, said = None, "", ""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        out = process.stdout.readline().decode() if ready else ""
        status = process.poll()
        if not out:
            said = process.stderr.read1().decode(errors="replace")
    finally:
        process.kill()
        process.communicate()
    expect(out.startswith("Listening on"),
           f"served a client, stopped the server, and restarted it at once on port {server.port}",
           "'Listening on ...' (SO_REUSEADDR lets it bind despite TIME_WAIT)",
           r01_outcome(status, said))


@step_test("echo-once", "thread-stack-size")
def test_echoes_one_read_then_hangs_up(server):
    connection = server.connect()
    connection.sendall(b"hello\n")
    reply = connection.recv(100)
    expect(reply == b"hello\n", "sent hello\\n", "the same bytes back",
           show(reply) if reply else "the end of the connection")
    rest = read_until_closed(connection)
    expect(rest == b"", "read on after the echo", "the end of the connection", show(rest))


@step_test("echo-once", "version-option")
def test_second_client_waits_while_the_first_is_silent(server):
    """Without threads, one silent client holds up everyone else."""
    silent = server.connect()
    time.sleep(0.1)
    waiting = server.connect()
    waiting.sendall(b"me too\n")
    ready, _, _ = select.select([waiting], [], [], 0.5)
    expect(not ready, "connected a silent client, then a second one that sent me too\\n",
           "no answer for the second while the first is served (one client at a time)",
           "an answer within 0.5 s")
    silent.sendall(b"first\n")
    reply = silent.recv(100)
    expect(reply == b"first\n", "sent first\\n from the first client", "first\\n back",
           show(reply))
    reply = waiting.recv(100)
    expect(reply == b"me too\n", "then read the second client", "me too\\n back", show(reply))


@step_test("accept-errors")
def test_failed_accept_is_reported_and_the_loop_goes_on(server):
    own = r01_Own(r01_command(server))
    pid = own.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        # No descriptor left for the next client. (A blocked accept() has
        # taken its descriptor already: the first client may still get in.)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (r01_first_free_descriptor(pid), hard))
        first, second = own.connect(), own.connect()
        first.sendall(R01_ANY_REQUEST)
        said = r01_wait_until_said(own, "server: accept failed: Too many open files")
        expect("server: accept failed: Too many open files" in said,
               "let the server open no more descriptors, and connected two clients",
               "'server: accept failed: Too many open files' on stderr", show(said))
        time.sleep(0.2)
        expect(own.process.poll() is None, "waited 0.2 s after the failed accept",
               "the server still running", f"exit status {own.process.poll()}")
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for number, connection in ((1, first), (2, second)):
            reply = r01_answer(connection, b"" if number == 1 else R01_ANY_REQUEST)
            expect(reply, "gave the descriptors back, and sent a request on both connections",
                   f"an answer for client {number} (the accept loop went on)", "nothing")
    finally:
        own.stop()


@step_test("accept-backoff")
def test_failing_accept_rests_instead_of_spinning(server):
    own = r01_Own(r01_command(server))
    pid = own.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (r01_first_free_descriptor(pid), hard))
        connection = own.connect()
        connection.sendall(R01_ANY_REQUEST)
        time.sleep(1)
        failures = own.said().count("accept failed")
        expect(0 < failures <= 30,
               "let the server open no more descriptors, connected, and waited 1 s",
               "a few 'accept failed' lines (one every 100 ms)", f"{failures}")
        connection.close()
    finally:
        own.stop()


# ==== Chapter: command-line options =========================================

@step_test("parse-options")
def test_host_and_port_options_choose_the_address(server):
    own = r01_Own(r01_command(server, "--host", "127.0.0.2", "--port", "0"))
    try:
        expect(own.line.startswith(b"Listening on ws://127.0.0.2:"),
               "started the server with --host 127.0.0.2 --port 0",
               "'Listening on ws://127.0.0.2:PORT'", show(own.line))
    finally:
        own.stop()


@step_test("parse-options")
def test_unknown_option_is_a_usage_error(server):
    status, _, said = r01_run(r01_command(server, "--colour"))
    expect(status == 2 and "unrecognized option" in said, "started the server with --colour",
           "exit status 2, and getopt_long's 'unrecognized option'",
           r01_outcome(status, said))


@step_test("reject-arguments")
def test_a_bare_port_is_refused(server):
    status, _, said = r01_run(r01_command(server, "5175"))
    expect(status == 2 and "server: unexpected argument '5175'" in said,
           "started the server with a bare 5175 (the port is an option now)",
           "exit status 2 and 'server: unexpected argument '5175''",
           r01_outcome(status, said))


@step_test("validate-port")
def test_port_out_of_range_is_refused(server):
    for port in ("70000", "12ab"):
        status, _, said = r01_run(r01_command(server, "--port", port))
        reason = f"server: invalid port '{port}' (use 0 to 65535)"
        expect(status == 2 and reason in said, f"started the server with --port {port}",
               f"exit status 2 and '{reason}'", r01_outcome(status, said))


@step_test("help-option")
def test_help_lists_the_options(server):
    status, out, _ = r01_run(r01_command(server, "--help"))
    expect(status == 0 and "--port" in out and "--host" in out, "ran the server with --help",
           "exit status 0 and a usage text naming --host and --port",
           f"exit status {status}, and {show(out)}")
    status, _, said = r01_run(r01_command(server, "--port", "70000"))
    expect(status == 2, "ran the server with --port 70000", "exit status 2 (a usage error)",
           r01_outcome(status, said))


@step_test("version-option")
def test_version_prints_the_version(server):
    status, out, _ = r01_run(r01_command(server, "--version"))
    expect(status == 0 and re.fullmatch(r"server \d+\.\d+\.\d+\n", out),
           "ran the server with --version", "exit status 0 and 'server X.Y.Z'",
           f"exit status {status}, and {show(out)}")


# ==== Chapter: one thread per client ========================================

@step_test("client-thread")
def test_silent_client_does_not_hold_up_others(server):
    silent = server.connect()
    time.sleep(0.1)
    other = server.connect()
    other.sendall(R01_ANY_REQUEST)
    ready, _, _ = select.select([other], [], [], TIMEOUT)
    reply = other.recv(100) if ready else b""
    expect(reply == R01_ANY_REQUEST[:100] or reply.startswith(b"HTTP/1.1 400 "),
           "connected a silent client, then a second one that sent a request",
           "an answer for the second at once (its echo, or a 400 once HTTP is read)",
           show(reply) if reply else f"nothing for {TIMEOUT} s")
    silent.close()


@step_test("client-thread", "thread-stack-size")
def test_client_without_a_thread_is_hung_up_on(server):
    own = r01_Own(r01_command(server))
    pid = own.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    try:
        # No room for one more mapping: not even a thread's stack.
        resource.prlimit(pid, resource.RLIMIT_AS, (r01_address_space(pid), hard))
        refused = r01_answer(own.connect())
        said = own.said()
        expect("server: cannot start a thread" in said and refused == b"",
               "left the server no address space for a thread's stack, and connected",
               "'server: cannot start a thread' on stderr and the connection closed",
               f"{show(refused)} back, and it said {show(said)}")
        resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
        reply = r01_answer(own.connect())
        expect(reply, "gave the address space back, and connected again",
               "an answer (the server went on)", "nothing")
    finally:
        own.stop()


@step_test("detach-threads")
def test_finished_threads_give_back_their_stacks(server):
    own = r01_Own(r01_command(server))
    pid = own.process.pid
    _, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    try:
        room = 64 * 1024 * 1024  # 8 stacks of 8 MiB, the default
        resource.prlimit(pid, resource.RLIMIT_AS, (r01_address_space(pid) + room, hard))
        for number in range(1, 31):
            reply = r01_answer(own.connect())
            expect(reply, f"gave the server 64 MiB of address space to spare, and served "
                   f"{number - 1} clients one after the other",
                   f"an answer for client {number} too",
                   f"nothing; its last line: {r01_last_line(own)}")
    finally:
        own.stop()


@step_test("thread-stack-size")
def test_a_hundred_silent_clients_fit_in_64_MiB(server):
    own = r01_Own(r01_command(server))
    pid = own.process.pid
    _, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    clients = []
    try:
        room = 64 * 1024 * 1024
        resource.prlimit(pid, resource.RLIMIT_AS, (r01_address_space(pid) + room, hard))
        for _ in range(100):
            clients.append(own.connect())
        time.sleep(0.2)
        for number, connection in enumerate(clients, 1):
            reply = r01_answer(connection)
            expect(reply, "gave the server 64 MiB of address space to spare, connected 100 "
                   "clients at once, then sent a request on each",
                   f"an answer for client {number} (100 small stacks fit)",
                   f"nothing; its last line: {r01_last_line(own)}")
    finally:
        for connection in clients:
            connection.close()
        own.stop()

# ==== Steps of r04 ==================================================

# Tests of range r04 (old step 4: reading an HTTP request), by small step.
# To be pasted into tutorial/tests/test_steps.py after its helpers.
#
# Notes for whoever merges this:
# - test_echoes_one_read_then_hangs_up (old steps 1-3) holds until "ws-refuse"
#   inclusive: "refuse-every-request" replaces echo_once().
# - test_silent_client_does_not_hold_up_others takes its "step < 4" branch
#   (the echo) before "refuse-every-request", and its 400 branch from it on.

# Stand-ins until test_steps.py has them (to be removed when pasted):
# ==== Answering with a status ===============================================

@step_test("refuse-every-request")
def test_plain_get_gets_400_with_a_reason(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    did = "sent GET / HTTP/1.1 with only a Host header"
    expect(response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), did,
           "HTTP/1.1 400 Bad Request", show(response))
    expect(b"Content-Type: text/plain" in response and b"not a WebSocket request" in response,
           did, "Content-Type: text/plain and a body saying 'not a WebSocket request'",
           show(response, 200))


@step_test("refuse-every-request")
def test_refusal_is_a_complete_http_response(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    did = "sent GET / HTTP/1.1 and read the answer to the end"
    expect(response.startswith(b"HTTP/1.1 "), did, "a status line, HTTP/1.1 ...", show(response))
    head, blank, body = response.partition(b"\r\n\r\n")
    expect(blank, did, "headers ending in a blank line (\\r\\n\\r\\n)", show(response))
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    length = fields.get(b"content-length", b"(none)")
    expect(length == str(len(body)).encode(), did,
           f"Content-Length: {len(body)}, the size of the body that came",
           f"Content-Length: {length.decode('latin-1')}")
    expect(fields.get(b"connection") == b"close", did, "Connection: close",
           show(fields.get(b"connection", b"(no Connection header)")))
    expect(body.endswith(b"\n"), did, "a body ending in a newline", show(body))


@step_test("end-tcp-connection")
def test_client_still_sending_a_body_reads_the_whole_400(server):
    body = b"x" * 1_000_000
    request = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
    did = "sent a POST with a 1,000,000-byte body the server never reads, then read the answer"
    try:
        response = http_exchange(server, request + body)
        got = show(response)
    except OSError as error:  # the server closed with our bytes unread: a reset
        response = b""
        got = f"{type(error).__name__} ({error.strerror})"
    expect(response.startswith(b"HTTP/1.1 400 "), did,
           "HTTP/1.1 400 ..., then the end of the connection", got)


# ==== Reading a request, bounded ============================================

@step_test("read-before-answering")
def test_answer_waits_for_the_blank_line(server):
    connection = server.connect()
    connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r")
    ready, _, _ = select.select([connection], [], [], 0.5)
    early = connection.recv(1000) if ready else b""
    expect(not ready, "sent a request up to the last \\r of its blank line",
           "no answer yet (the blank line is not complete)",
           show(early) if early else "the end of the connection")
    connection.sendall(b"\n")
    response = read_until_closed(connection)
    connection.close()
    expect(response.startswith(b"HTTP/1.1 400 "), "then sent the final \\n",
           "HTTP/1.1 400 ...", show(response))


@step_test("read-before-answering")
def test_request_typed_with_bare_newlines_is_answered(server):
    response = http_exchange(server, b"GET / HTTP/1.1\nHost: localhost\n\n")
    expect(response.startswith(b"HTTP/1.1 400 ") and b"not a WebSocket request" in response,
           "sent a request whose lines end in \\n alone, as netcat sends them",
           "HTTP/1.1 400 ... not a WebSocket request", show(response, 200))


@step_test("read-before-answering")
def test_nul_byte_in_request_gets_400(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: local\0host\r\n\r\n")
    expect(response.startswith(b"HTTP/1.1 400 ") and b"NUL byte in request" in response,
           "sent a Host header with a NUL byte in it",
           "HTTP/1.1 400 ... NUL byte in request", show(response, 200))


@step_test("read-before-answering")
def test_client_that_leaves_mid_request_gets_no_answer(server):
    connection = server.connect()
    connection.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    connection.shutdown(socket.SHUT_WR)
    response = read_until_closed(connection)
    connection.close()
    expect(response == b"", "sent half a request, then closed our sending side",
           "no answer, just the end of the connection (nobody is left to read one)",
           show(response))


@step_test("read-before-answering")
def test_request_of_8000_bytes_is_read_whole(server):
    request = b"GET / HTTP/1.1\r\nX: " + b"a" * 7900 + b"\r\n\r\n"
    response = http_exchange(server, request)
    expect(response.startswith(b"HTTP/1.1 400 ") and b"not a WebSocket request" in response,
           f"sent a request of {len(request)} bytes (under the 8,192-byte limit)",
           "HTTP/1.1 400 ... not a WebSocket request", show(response, 200))


@step_test("refuse-large-requests")
def test_header_block_over_8_KiB_gets_431(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    expect(response.startswith(b"HTTP/1.1 431 "),
           "sent a request with a 9,000-byte header (more than 8 KiB)",
           "HTTP/1.1 431 Request Header Fields Too Large",
           show(response) if response else "no answer, just the end of the connection")


# ==== Parsing the request line and headers ==================================

@step_test("parse-request-line")
def test_malformed_request_line_gets_400(server):
    response = http_exchange(server, b"HELLO\r\n\r\n")
    expect(response.startswith(b"HTTP/1.1 400 "), "sent the request line HELLO",
           "HTTP/1.1 400 Bad Request", show(response))


@step_test("parse-request-line")
def test_malformed_request_line_says_why(server):
    for line in [b"HELLO", b"GET /", b"GET  / HTTP/1.1", b"GET / HTTP/1.1 please"]:
        response = http_exchange(server, line + b"\r\nHost: localhost\r\n\r\n")
        expect(response.startswith(b"HTTP/1.1 400 ") and b"malformed request line" in response,
               f"sent the request line {show(line)}", "HTTP/1.1 400 ... malformed request line",
               show(response, 200))


@step_test("parse-request-line")
def test_head_gets_the_status_and_headers_without_a_body(server):
    response = http_exchange(server, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    expect(response.startswith(b"HTTP/1.1 400 ") and response.endswith(b"\r\n\r\n")
           and b"Content-Length: " in response,
           "sent HEAD / HTTP/1.1", "HTTP/1.1 400 and its headers, Content-Length included, "
           "ending with the blank line: no body (RFC 9110 §9.3.2)", show(response, 200))


@step_test("parse-header-lines")
def test_malformed_header_line_gets_400(server):
    for line in [b"Host localhost", b"Host : localhost", b": localhost", b" Folded: value"]:
        response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + line
                                 + b"\r\n\r\n")
        expect(response.startswith(b"HTTP/1.1 400 ") and b"malformed header line" in response,
               f"sent the header line {show(line)}", "HTTP/1.1 400 ... malformed header line",
               show(response, 200))


@step_test("parse-header-lines")
def test_65_header_fields_get_431(server):
    fields = b"".join(b"X-Field-%d: %d\r\n" % (i, i) for i in range(64))
    response = http_exchange(server, b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    expect(response.startswith(b"HTTP/1.1 400 ") and b"not a WebSocket request" in response,
           "sent a request with 64 header fields (the most we keep)",
           "HTTP/1.1 400 ... not a WebSocket request", show(response, 200))
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + fields + b"\r\n")
    expect(response.startswith(b"HTTP/1.1 431 ") and b"too many header fields" in response,
           "sent a request with 65 header fields", "HTTP/1.1 431 ... too many header fields",
           show(response, 200))

# ==== Steps of r05 ==================================================

# ==== r05: the opening handshake (old step 5) ================================
#
# Stand-ins until test_steps.py has them (they will be removed):

def r05_answer(server, request):
    """The server's answer to request: everything up to the close for a
    refusal; the header block alone for a 101, after which the connection may
    stay open. Whatever came before a timeout or a reset, if one happens."""
    connection = server.connect()
    connection.sendall(request)
    data = b""
    try:
        while not (data.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in data):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    connection.close()
    return data


def r05_status(answer):
    """The status line of an answer, printable; or what happened instead."""
    if not answer:
        return "nothing (the server closed the connection without answering)"
    return show(answer.split(b"\r\n", 1)[0])


def r05_expect_refusal(server, request, did, status, reason):
    """Sends request; expects the status line "HTTP/1.1 <status> ..." and the
    reason in the body."""
    answer = r05_answer(server, request)
    expect(answer.startswith(f"HTTP/1.1 {status} ".encode()), did,
           f"HTTP/1.1 {status} ...", r05_status(answer))
    body = answer.split(b"\r\n\r\n", 1)[-1]
    expect(reason.encode() in body, did, f"a body saying {show(reason)}", show(body))


def r05_expect_101(server, request, did):
    """Sends request; expects "101 Switching Protocols". Returns the answer."""
    answer = r05_answer(server, request)
    expect(answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), did,
           "HTTP/1.1 101 Switching Protocols", r05_status(answer))
    return answer


@step_test("accept-websocket-request")
def test_handshake_gets_101_with_the_right_accept_key(server):
    # RFC 6455 §1.3's own example; Python's hashlib and base64 agree with it.
    expect(expected_accept() == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
           f"computed base64(SHA-1({KEY} + GUID)) in Python",
           "the RFC's s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", expected_accept())
    did = f"sent a WebSocket upgrade request with Sec-WebSocket-Key {KEY}"
    answer = r05_expect_101(server, upgrade_request(), did)
    header = f"Sec-WebSocket-Accept: {expected_accept()}\r\n".encode()
    got = [line for line in answer.split(b"\r\n")
           if line.lower().startswith(b"sec-websocket-accept")]
    expect(header in answer, did, show(header),
           show(got[0]) if got else "(no Sec-WebSocket-Accept header)")


@step_test("accept-websocket-request")
def test_bad_key_gets_400(server):
    # The old test checked the status; the reason shows which check refused it.
    r05_expect_refusal(server, upgrade_request(key="tooshort"), "sent Sec-WebSocket-Key: tooshort",
                       400, "Sec-WebSocket-Key must be one base64-encoded 16-byte value")


@step_test("accept-websocket-request")
def test_missing_or_repeated_key_gets_400(server):
    reason = "Sec-WebSocket-Key must be one base64-encoded 16-byte value"
    without = upgrade_request().replace(f"Sec-WebSocket-Key: {KEY}\r\n".encode(), b"")
    r05_expect_refusal(server, without, "sent an upgrade request without Sec-WebSocket-Key",
                       400, reason)
    twice = upgrade_request(extra_headers=f"Sec-WebSocket-Key: {KEY}\r\n")
    r05_expect_refusal(server, twice, "sent Sec-WebSocket-Key twice", 400, reason)


@step_test("accept-websocket-request")
def test_upgrade_must_name_websocket_in_any_case(server):
    other = upgrade_request().replace(b"Upgrade: websocket", b"Upgrade: h2c")
    r05_expect_refusal(server, other, "sent Upgrade: h2c instead of Upgrade: websocket", 400,
                       'no "Upgrade: websocket" header')
    capitals = upgrade_request().replace(b"Upgrade: websocket", b"Upgrade: WebSocket")
    r05_expect_101(server, capitals, "sent Upgrade: WebSocket (tokens are case-insensitive)")


@step_test("require-get")
def test_post_upgrade_gets_400(server):
    post = upgrade_request().replace(b"GET /chat", b"POST /chat")
    r05_expect_refusal(server, post, "sent the upgrade request with POST instead of GET", 400,
                       "a WebSocket handshake must use GET")


@step_test("require-http-1-1")
def test_http_1_0_upgrade_gets_400(server):
    old = upgrade_request().replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)
    r05_expect_refusal(server, old, "sent the upgrade request as HTTP/1.0", 400,
                       "a WebSocket handshake needs HTTP/1.1 or later")


@step_test("require-host")
def test_upgrade_without_host_gets_400(server):
    hostless = upgrade_request().replace(b"Host: localhost\r\n", b"")
    r05_expect_refusal(server, hostless, "sent the upgrade request without a Host header", 400,
                       "missing Host header")


@step_test("connection-upgrade")
def test_connection_must_contain_upgrade(server):
    keep_alive = upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive")
    r05_expect_refusal(server, keep_alive, "sent Connection: keep-alive (no Upgrade)", 400,
                       'the Connection header must contain "Upgrade"')
    firefox = upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade")
    r05_expect_101(server, firefox, "sent Connection: keep-alive, Upgrade, as Firefox does")


@step_test("version-once")
def test_missing_version_gets_400(server):
    versionless = upgrade_request().replace(b"Sec-WebSocket-Version: 13\r\n", b"")
    r05_expect_refusal(server, versionless,
                       "sent the upgrade request without Sec-WebSocket-Version", 400,
                       "Sec-WebSocket-Version must be sent once")


@step_test("version-13")
def test_version_8_gets_426_naming_version_13(server):
    did = "sent Sec-WebSocket-Version: 8"
    answer = r05_answer(server, upgrade_request(version="8"))
    expect(answer.startswith(b"HTTP/1.1 426 "), did, "HTTP/1.1 426 Upgrade Required",
           r05_status(answer))
    headers = answer.split(b"\r\n\r\n", 1)[0]
    expect(b"\r\nSec-WebSocket-Version: 13\r\n" in headers + b"\r\n", did,
           "a Sec-WebSocket-Version: 13 header naming the version we speak", show(headers, 200))

# ==== Steps of r06 ==================================================

# ==== r06: reading frames (old step 6) =======================================
#
# Stand-ins until test_steps.py has them (they will be removed):

R06_ZERO_KEY = b"\x00\x00\x00\x00"


def r06_frame(opcode, payload, key=R06_ZERO_KEY, fin=True, masked=True):
    """One client frame, in the shortest length form. With the zero key,
    masking changes nothing: the payload goes out as it is, which lets the
    steps before unmasking print it."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        header = struct.pack("!BB", first, mask_bit | len(payload))
    elif len(payload) < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, len(payload))
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, len(payload))
    return header + (key + mask(payload, key) if masked else payload)


def r06_send(client, data):
    """Sends data; a server that already hung up is not an error here (the
    test then finds no line printed, and says so)."""
    try:
        client.connection.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def r06_printed(server, timeout=TIMEOUT):
    """The next line the server printed, shown for a message, or a sentence."""
    line = server.read_line(timeout)
    return line, (show(line.rstrip(b"\n")) if line else "(nothing printed)")


def r06_hung_up(client):
    """True when the server closes the connection before TIMEOUT, sending
    nothing (old step 6) or only its own close frame (later steps)."""
    try:
        data = read_until_closed(client.connection)
    except socket.timeout:
        return False
    return data == b"" or data.startswith(b"\x88")


def r06_expect_hang_up(server, client, did):
    hung_up = r06_hung_up(client)
    line, printed = r06_printed(server, 0.2)
    expect(hung_up and not line, did, "the server to close the connection, printing nothing",
           "it closed it" + (f", after printing {printed}" if line else "")
           if hung_up else f"the connection still open after {TIMEOUT} s, and {printed}")


@step_test("print-messages", "stay-failed")
def test_first_message_is_printed(server):
    client = Client(server)
    r06_send(client, r06_frame(1, b"Hello"))
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 5 bytes: Hello\n",
           "sent a text frame \"Hello\", masked with the key 00 00 00 00",
           "the line 'received a text message of 5 bytes: Hello'", printed)
    client.close()


@step_test("print-messages", "stay-failed")
def test_header_sent_one_byte_at_a_time_is_read(server):
    client = Client(server)
    for byte in r06_frame(1, b"Hello"):
        r06_send(client, bytes([byte]))
        time.sleep(0.02)
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 5 bytes: Hello\n",
           "sent a text frame \"Hello\" one byte at a time",
           "the line 'received a text message of 5 bytes: Hello'", printed)
    client.close()


@step_test("print-messages", "stay-failed")
def test_16_bit_length_is_read(server):
    client = Client(server)
    r06_send(client, r06_frame(1, b"a" * 300))
    line, printed = r06_printed(server)
    expect(line.startswith(b"received a text message of 300 bytes: aaa"),
           "sent a text frame of 300 bytes (length 126, then 01 2c)",
           "'received a text message of 300 bytes: aaa...'", printed)
    client.close()


@step_test("print-messages", "stay-failed")
def test_message_larger_than_the_buffer_hangs_up(server):
    client = Client(server)
    r06_send(client, r06_frame(1, b"Hi"))
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 2 bytes: Hi\n", "sent a text frame \"Hi\"",
           "the line 'received a text message of 2 bytes: Hi'", printed)
    r06_send(client, r06_frame(1, b"a" * 5000))
    r06_expect_hang_up(server, client, "sent a text frame of 5,000 bytes (the buffer has 4,096)")
    client.close()


@step_test("text-or-binary", "stay-failed")
def test_binary_message_is_printed_as_binary(server):
    client = Client(server)
    r06_send(client, r06_frame(2, b"abc"))
    line, printed = r06_printed(server)
    expect(line == b"received a binary message of 3 bytes: abc\n",
           "sent a binary frame (opcode 2) \"abc\"",
           "the line 'received a binary message of 3 bytes: abc'", printed)
    client.close()


@step_test("reuse-inbox", "stay-failed")
def test_more_than_an_inbox_of_messages_is_printed(server):
    client = Client(server)
    for number in range(10):
        r06_send(client, r06_frame(1, str(number).encode() * 1000))
        line, printed = r06_printed(server)
        expect(line.startswith(f"received a text message of 1000 bytes: {number}".encode()),
               f"sent {number + 1} text frames of 1,000 bytes (the inbox holds 8,192)",
               f"a line for message {number + 1}", printed)
    client.close()


@step_test("hang-up-on-impossible-length")
def test_length_with_the_top_bit_set_hangs_up(server):
    client = Client(server)
    r06_send(client, bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) + R06_ZERO_KEY)
    r06_expect_hang_up(server, client,
                       "sent a frame header with the 64-bit length 80 00 00 00 00 00 00 00")
    client.close()


@step_test("unmask-payload", "stay-failed")
def test_server_prints_each_message(server):
    client = Client(server)
    client.send_frame(1, b"Hello")
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 5 bytes: Hello\n",
           "sent a text frame \"Hello\" masked with a random key",
           "the line 'received a text message of 5 bytes: Hello'", printed)
    client.send_frame(2, b"\x00\x01\x02")
    line, printed = r06_printed(server)
    expect(line.startswith(b"received a binary message of 3 bytes"),
           "sent a binary frame of 3 bytes masked with a random key",
           "'received a binary message of 3 bytes...'", printed)
    client.close()


@step_test("unmask-payload", "stay-failed")
def test_payload_arriving_in_two_pieces_is_unmasked(server):
    client = Client(server)
    text = b"The quick brown fox jumps over"  # 30 bytes: 4 words of 8, and 6 more
    frame = r06_frame(1, text, key=b"\x37\xfa\x21\x3d")
    r06_send(client, frame[:6 + 3])  # the 6-byte header and 3 payload bytes
    time.sleep(0.2)
    r06_send(client, frame[6 + 3:])
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 30 bytes: " + text + b"\n",
           f"sent {show(text)} masked with key 37 fa 21 3d, in two pieces: 3 bytes, then 27",
           f"the line 'received a text message of 30 bytes: {text.decode()}'", printed)
    client.close()


@step_test("require-masked-frames")
def test_unmasked_frame_hangs_up(server):
    client = Client(server)
    r06_send(client, r06_frame(1, b"Hello", masked=False))
    r06_expect_hang_up(server, client, "sent a text frame \"Hello\" without a mask (MASK=0)")
    client.close()


@step_test("control-frame-rules")
def test_broken_control_frames_hang_up(server):
    client = Client(server)
    r06_send(client, r06_frame(9, b"p" * 126))
    r06_expect_hang_up(server, client, "sent a ping of 126 bytes (control frames have at most 125)")
    client.close()
    client = Client(server)
    r06_send(client, r06_frame(9, b"ping", fin=False))
    r06_expect_hang_up(server, client, "sent a ping with FIN=0 (control frames are never fragmented)")
    client.close()


@step_test("handle-control-frames", "stay-failed")
def test_ping_is_not_printed(server):
    client = Client(server)
    r06_send(client, r06_frame(9, b"are you there?"))
    r06_send(client, r06_frame(1, b"Hello"))
    line, printed = r06_printed(server)
    expect(line == b"received a text message of 5 bytes: Hello\n",
           "sent a ping \"are you there?\", then a text frame \"Hello\"",
           "only the line 'received a text message of 5 bytes: Hello'", printed)
    client.close()


@step_test("receive-close-frame")
def test_close_frame_ends_the_connection(server):
    client = Client(server)
    r06_send(client, r06_frame(8, close_frame(1000, b"bye")))
    r06_expect_hang_up(server, client, "sent a close frame (1000, \"bye\")")
    client.close()

# ==== Steps of r07 ==================================================

# Tests of range r07: old steps 7, 8 and 9 (writing frames and the Notifier,
# control frames, messages larger than the buffer). To be pasted into
# test_steps.py after its helpers (Server, Client, read_until_closed,
# close_frame...).

# ---- Stand-ins until test_steps.py has them (to be removed) ----------------

# ---- Helpers of this range --------------------------------------------------

R07_ENDED = "the end of the connection"


def r07_next_frame(client):
    """(fin, opcode, payload) of the server's next frame, or (None, None, why)
    when none came: R07_ENDED, or what went wrong instead."""
    try:
        return client.read_frame()
    except (StepFailure, AssertionError) as error:  # Client's way of saying what it did not like
        why = str(error)
    except ConnectionResetError:
        return None, None, R07_ENDED
    except OSError as error:  # nothing came in time
        return None, None, f"nothing after {TIMEOUT} s ({type(error).__name__})"
    ended = "end of the connection" in why or "closed the connection" in why
    return None, None, R07_ENDED if ended else why


def r07_next_message(client):
    """(opcode, payload) of the server's next whole message, or (None, why)."""
    fin, opcode, payload = r07_next_frame(client)
    while fin is False:
        fin, continuation, more = r07_next_frame(client)
        if continuation != 0:
            return None, (f"a frame with opcode {continuation} inside a message"
                          if fin is not None else more)
        payload += more
    return (opcode, payload) if fin else (None, payload)


def r07_describe(opcode, payload):
    """A message or frame as the tests print it: 'opcode 1 'Hello'', or why none came."""
    if opcode is None:
        return payload
    return f"opcode {opcode} with {len(payload)} bytes {show(payload)}"


# ==== Writing frames, and the Notifier ======================================

@step_test("hand-to-notifier")
def test_text_and_binary_are_echoed(server):
    client = Client(server)
    text = "Hello, κόσμε".encode()
    client.send_frame(1, text)
    got = r07_next_message(client)
    expect(got == (1, text), f"sent the text message {show(text)}",
           f"the same text message back (opcode 1) {show(text)}", r07_describe(*got))
    payload = os.urandom(1000)
    client.send_frame(2, payload)
    got = r07_next_message(client)
    expect(got == (2, payload), "sent a binary message of 1000 random bytes",
           "the same 1000 bytes back as a binary message (opcode 2)", r07_describe(*got))
    client.close()


@step_test("hand-to-notifier")
def test_close_status_and_reason_are_echoed(server):
    client = Client(server)
    sent = close_frame(1000, b"bye")
    client.send_frame(8, sent)
    fin, opcode, payload = r07_next_frame(client)
    expect((opcode, payload) == (8, sent), 'sent a close frame with 1000 "bye"',
           f"a close frame (opcode 8) with the same payload {show(sent)}",
           r07_describe(opcode, payload))
    rest = read_until_closed(client.connection)
    expect(rest == b"", "read the server's close frame, then waited",
           R07_ENDED + ", and no byte more", show(rest))


@step_test("hand-to-notifier")
def test_empty_close_gets_an_empty_close(server):
    client = Client(server)
    client.send_frame(8, b"")
    fin, opcode, payload = r07_next_frame(client)
    expect((opcode, payload) == (8, b""), "sent a close frame without a payload (status 1005)",
           "an empty close frame (1005 is never sent, RFC 6455 §7.4.1)",
           r07_describe(opcode, payload))
    client.close()


# ==== Control frames ========================================================

@step_test("answer-ping")
def test_ping_gets_a_pong_with_the_same_payload(server):
    client = Client(server)
    client.send_frame(9, b"are you there?")
    fin, opcode, payload = r07_next_frame(client)
    expect((fin, opcode, payload) == (True, 10, b"are you there?"), 'sent a ping "are you there?"',
           "a pong (opcode 10) with the same payload", r07_describe(opcode, payload))
    client.send_frame(10, b"unsolicited pong")  # RFC 6455 §5.5.3: no answer expected
    client.send_frame(1, b"still here")
    got = r07_next_message(client)
    expect(got == (1, b"still here"), 'sent an unsolicited pong, then the text "still here"',
           "the pong ignored and the text echoed", r07_describe(*got))
    client.close()


# ==== Messages larger than the buffer =======================================

@step_test("deliver-in-pieces")
def test_message_far_larger_than_4_KiB_is_echoed(server):
    client = Client(server)
    payload = os.urandom(1024 * 1024)
    client.send_frame(2, payload)
    got = r07_next_message(client)
    expect(got == (2, payload), "sent 1 MiB of random bytes in one binary frame",
           "the same 1 MiB back as one binary message, in as many frames as the server likes",
           r07_describe(*got))
    client.close()


@step_test("deliver-in-pieces")
def test_fragmented_message_with_a_ping_inside_is_echoed(server):
    client = Client(server)
    client.send_frame(1, b"frag", fin=False)
    client.send_frame(9, b"ping")
    client.send_frame(0, b"ment", fin=False)
    client.send_frame(0, b"ed", fin=True)
    did = 'sent "frag" (text, FIN=0), a ping, then "ment" and "ed" (continuation frames)'
    message, pongs, frames = b"", 0, []
    while True:
        fin, opcode, payload = r07_next_frame(client)
        if opcode is None:
            frames.append(payload)
            break
        if opcode == 10:
            pongs += 1
            continue
        frames.append(f"FIN={int(fin)} opcode {opcode} {show(payload)}")
        message += payload
        if fin:
            break
    expect(message == b"fragmented" and fin, did,
           'the message "fragmented" back: frames with FIN=0, and FIN=1 on the last', frames)
    expect(pongs == 1, did, "one pong, between the frames or before them", f"{pongs} pongs")
    client.close()


@step_test("check-fragment-order")
def test_frames_out_of_message_order_end_the_connection(server):
    cases = [
        ("sent a continuation frame with no message to continue",
         [dict(opcode=0, payload=b"lost")], []),
        ('sent "frag" (text, FIN=0), then a new text message inside it',
         [dict(opcode=1, payload=b"frag", fin=False), dict(opcode=1, payload=b"intruder")],
         ["opcode 1 with 4 bytes 'frag'"]),
    ]
    for did, frames, echoes in cases:
        client = Client(server)
        for frame in frames:
            client.send_frame(**frame)
        seen = []
        while True:
            fin, opcode, payload = r07_next_frame(client)
            if opcode is None:
                if payload != R07_ENDED:
                    seen.append(payload)
                break
            if opcode == 8:  # from old step 10 on, a close frame with 1002 comes first
                seen.append(f"close {show(payload[:2])}")
                client.send_frame(8, payload[:2])
                continue
            seen.append(r07_describe(opcode, payload))
        expect(seen in (echoes, echoes + [f"close {show(close_frame(1002))}"]), did,
               f"{echoes or 'no echo'}, then {R07_ENDED}", seen)
        client.close()

# ==== Steps of r10 ==================================================

# Step tests for range r10: old step 10 (trust nothing) and old step 12 (the
# frame tracer, the browser page). To be pasted into test_steps.py after its
# helpers.

# ---- Stand-ins until test_steps.py has them (remove when pasting) ----------

# ---- End of the stand-ins ---------------------------------------------------


# ==== Trust nothing: failing the connection ==================================

def r10_read_all(connection):
    """Everything the server sends until it ends the connection, or until
    TIMEOUT seconds have passed."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([connection], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def r10_expect_close(client, did, code, reason=None):
    """Expects the server to answer with one close frame carrying code (and
    reason, if given), and then to end the connection."""
    data = client.buffer + r10_read_all(client.connection)
    client.close()
    wanted = f"a close frame with code {code}" + (f", reason {show(reason)}" if reason else "")
    if len(data) >= 4 and data[0] == 0x88 and data[1] == len(data) - 2:
        got_code = struct.unpack("!H", data[2:4])[0]
        ok = got_code == code and (reason is None or data[4:] == reason)
        got = f"a close frame with code {got_code}, reason {show(data[4:])}"
    else:
        ok = False
        got = show(data) if data else "the end of the connection, without a close frame"
    expect(ok, did, wanted + ", then the end of the connection", got)


@step_test("fail-connection")
def test_unmasked_frame_gets_close_1002_with_a_reason(server):
    client = Client(server)
    client.send_frame(1, b"hi", masked=False)
    r10_expect_close(client, "sent an unmasked text frame (RFC 6455 §5.1: clients must mask)",
                     1002, b"client frames must be masked")


@step_test("impossible-length")
def test_length_with_its_top_bit_set_gets_1002(server):
    client = Client(server)
    # Binary, FIN, masked, 64-bit length 2^63, mask key 01 02 03 04; no payload.
    client.connection.sendall(bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]))
    r10_expect_close(client, "sent a frame header whose 64-bit length has its top bit set",
                     1002, b"payload length too large")


@step_test("reserved-bits")
def test_reserved_bit_gets_1002(server):
    client = Client(server)
    client.send_frame(1, b"hi", rsv=4)
    r10_expect_close(client, "sent a text frame with RSV1 set, no extension being negotiated",
                     1002, b"reserved bits set, but no extension was negotiated")


@step_test("reserved-opcodes")
def test_reserved_opcodes_get_1002(server):
    for opcode in (0x3, 0xB):
        client = Client(server)
        client.send_frame(opcode, b"hi")
        r10_expect_close(client, f"sent a frame with the reserved opcode {opcode:X}", 1002,
                         b"reserved opcode")


# ==== Trust nothing: UTF-8 ===================================================

@step_test("validate-text-messages")
def test_text_that_is_not_utf8_gets_1007(server):
    cases = [(b"caf\xff", "a byte (FF) that UTF-8 never uses"),
             (b"caf\xc3", "a character cut off at the end (C3 without its second byte)")]
    for payload, what in cases:
        client = Client(server)
        client.send_frame(1, payload)
        r10_expect_close(client, f"sent a text message {show(payload)}: {what}", 1007,
                         b"text message is not UTF-8")


@step_test("validate-text-messages")
def test_character_split_between_frames_is_echoed(server):
    client = Client(server)
    client.send_frame(1, b"\xce", fin=False)  # the first byte of κ (U+03BA)...
    client.send_frame(0, b"\xba")  # ...and the second, in the next frame
    did = "sent κ (CE BA) as two frames of one byte each"
    got = client.read_message()
    expect(got == (1, "κ".encode()), did, "the text message 'κ' echoed",
           f"opcode {got[0]}, payload {show(got[1])}")
    client.close()


@step_test("utf8-forbidden-sequences")
def test_overlong_forms_surrogates_and_too_large_code_points_get_1007(server):
    cases = [(b"\xe0\x80\xaf", "'/' as an overlong 3-byte form"),
             (b"\xed\xa0\x80", "the UTF-16 surrogate U+D800"),
             (b"\xf4\x90\x80\x80", "U+110000, past the last code point")]
    for payload, what in cases:
        client = Client(server)
        client.send_frame(1, payload)
        r10_expect_close(client, f"sent {what} ({payload.hex(' ')}) as text", 1007,
                         b"text message is not UTF-8")
    # The neighbours of each forbidden range are valid, and come back.
    for text in ["\u0800", "\ud7ff", "\ue000", "\U00010000", "\U0010ffff"]:
        client = Client(server)
        client.send_frame(1, text.encode())
        got = client.read_message()
        expect(got == (1, text.encode()), f"sent U+{ord(text):04X} as text",
               f"it echoed ({text.encode().hex(' ')})", f"opcode {got[0]}, {show(got[1])}")
        client.close()


# ==== Trust nothing: close codes =============================================

@step_test("close-code-ranges")
def test_close_codes_outside_the_rfc_ranges_get_1002(server):
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        client = Client(server)
        client.send_frame(8, close_frame(code))
        r10_expect_close(client, f"sent a close frame with code {code}", 1002,
                         b"invalid close code")
    for code in (1000, 1014, 3000, 4999):
        client = Client(server)
        client.send_frame(8, close_frame(code))
        r10_expect_close(client, f"sent a close frame with code {code}, which is valid", code)


@step_test("one-byte-close")
def test_protocol_errors_get_their_close_codes(server):
    cases = [
        (dict(opcode=1, payload=b"hi", masked=False), 1002, "an unmasked frame"),
        (dict(opcode=1, payload=b"hi", rsv=4), 1002, "a reserved bit"),
        (dict(opcode=3, payload=b"hi"), 1002, "a reserved opcode"),
        (dict(opcode=0, payload=b"hi"), 1002, "a continuation without a start"),
        (dict(opcode=1, payload=b"\xed\xa0\x80"), 1007, "a UTF-16 surrogate as text"),
        (dict(opcode=8, payload=close_frame(999)), 1002, "close code 999"),
        (dict(opcode=8, payload=b"\x03"), 1002, "a close frame with a 1-byte payload"),
    ]
    for frame, code, what in cases:
        client = Client(server)
        client.send_frame(**frame)
        r10_expect_close(client, f"sent {what}", code)


@step_test("close-reason-utf8")
def test_close_reason_that_is_not_utf8_gets_1007(server):
    client = Client(server)
    client.send_frame(8, close_frame(1000, b"bad \xff"))
    r10_expect_close(client, "sent close 1000 with the reason 'bad \\xff'", 1007,
                     b"close reason is not valid UTF-8")
    client = Client(server)
    client.send_frame(8, close_frame(1000, "κ".encode()))
    r10_expect_close(client, "sent close 1000 with the reason 'κ' (valid UTF-8)", 1000,
                     "κ".encode())


# ==== Seeing the frames ======================================================

@step_test("shorter-help")
def test_help_fits_in_80_columns_and_the_version_is_0_3_0(server):
    path = server.process.args[0]
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True,
                               timeout=TIMEOUT).stdout
    widest = max(help_text.splitlines(), key=len)
    expect(len(widest) <= 80, "ran server --help", "lines of at most 80 columns",
           f"{len(widest)} columns: {show(widest, 90)}")
    version = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=TIMEOUT).stdout
    expect(version == "server 0.3.0\n", "ran server --version", "'server 0.3.0'", show(version))


def r10_trace_of(server, session, *options):
    """Stops the test's server, starts the same binary with --quiet --trace
    (and options), runs session(port) against it, stops it, and returns the
    lines it printed on stderr."""
    server.stop()
    arguments = [server.process.args[0], "--port", "0", "--quiet", "--trace", *options]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = process.stdout.readline()
        if b":" not in line:
            process.kill()
            said = process.communicate(timeout=TIMEOUT)[1]
            expect(False, f"started server {' '.join(arguments[1:])}",
                   "'Listening on ...'", f"{show(line)}, exit status {process.returncode}, "
                   f"and on stderr {show(said)}")
        session(int(line.rsplit(b":", 1)[1].split()[0]))
    finally:
        process.terminate()
        errors = process.communicate(timeout=TIMEOUT)[1]
    return errors.decode(errors="replace").splitlines()


def r10_handshake(port):
    """A connection that has completed the opening handshake."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    connection.sendall(upgrade_request())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = connection.recv(1)
        expect(chunk, "sent a WebSocket handshake", "a 101 response", show(response))
        response += chunk
    return connection


def r10_masked_frame(opcode, payload, key, fin=True):
    """A client frame with a fixed mask key (4 bytes), so the trace is known."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        header = struct.pack("!BB", first, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", first, 0x80 | 126, len(payload))
    return header + key + mask(payload, key)


def r10_expect_lines(trace, did, lines):
    for line in lines:
        expect(line in trace, did, f"the trace line {line!r}",
               "these lines:\n    " + "\n    ".join(trace[-12:]) if trace else "no trace at all")


@step_test("trace-option")
def test_trace_option_is_accepted(server):
    r10_trace_of(server, lambda port: r10_handshake(port).close())


@step_test("trace-handshake-response")
def test_trace_shows_the_101_response(server):
    trace = r10_trace_of(server, lambda port: r10_handshake(port).close())
    r10_expect_lines(trace, "ran server --trace and completed a handshake",
                     ["thread 1 >> HTTP/1.1 101 Switching Protocols",
                      "thread 1 >> Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="])


@step_test("trace-request")
def test_trace_shows_the_request(server):
    trace = r10_trace_of(server, lambda port: r10_handshake(port).close())
    r10_expect_lines(trace, "ran server --trace and sent GET /chat with an Upgrade",
                     ["thread 1 << GET /chat HTTP/1.1",
                      "thread 1 << Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])


@step_test("trace-refusals")
def test_trace_shows_a_refusal(server):
    def session(port):
        connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_closed(connection)
        connection.close()
    trace = r10_trace_of(server, session)
    refusal = [line for line in trace if line.startswith("thread 1 >> HTTP/1.1 400 Bad Request (")]
    expect(refusal, "ran server --trace and sent GET / without Upgrade",
           "a line 'thread 1 >> HTTP/1.1 400 Bad Request (...)'", show("\n".join(trace)))


@step_test("trace-sent-frames")
def test_trace_shows_the_frames_it_sends(server):
    def session(port):
        connection = r10_handshake(port)
        connection.sendall(r10_masked_frame(1, b"Hello", bytes.fromhex("37fa213d")))
        connection.recv(7)
        connection.close()
    trace = r10_trace_of(server, session)
    r10_expect_lines(trace, "ran server --trace and sent the text 'Hello'",
                     ['thread 1 >> FIN=1 RSV=000 opcode=1 (text) MASK=0 length=5 (7-bit) "Hello"'])


@step_test("trace-received-control-frames")
def test_trace_shows_a_ping_it_receives(server):
    def session(port):
        connection = r10_handshake(port)
        connection.sendall(r10_masked_frame(9, b"tick", bytes.fromhex("55667788")))
        connection.recv(6)
        connection.close()
    trace = r10_trace_of(server, session)
    wanted = "thread 1 << FIN=1 RSV=000 opcode=9 (ping) MASK=1 key=55667788 length=4 (7-bit)"
    expect(any(line.startswith(wanted) for line in trace),
           "ran server --trace and sent a ping 'tick' masked with 55 66 77 88",
           f"a line starting {wanted!r}", show("\n".join(trace), 400))


@step_test("trace-received-data-frames")
def test_trace_draws_the_rfc_hello_in_both_directions(server):
    def session(port):
        connection = r10_handshake(port)
        # RFC 6455 §5.7: "Hello", masked with 37 fa 21 3d.
        connection.sendall(bytes.fromhex("818537fa213d7f9f4d5158"))
        echo = connection.recv(7)
        expect(echo == b"\x81\x05Hello", "sent the RFC's masked 'Hello'",
               "its echo 81 05 'Hello'", show(echo))
        connection.close()
    trace = r10_trace_of(server, session)
    r10_expect_lines(trace, "ran server --trace and sent the RFC's masked 'Hello'",
                     ["thread 1 >> HTTP/1.1 101 Switching Protocols",
                      'thread 1 << FIN=1 RSV=000 opcode=1 (text) MASK=1 key=37fa213d length=5 '
                      '(7-bit) "Hello"',
                      'thread 1 >> FIN=1 RSV=000 opcode=1 (text) MASK=0 length=5 (7-bit) "Hello"'])


@step_test("describe-bytes-in-hex")
def test_trace_shows_binary_payloads_in_hex(server):
    payload = bytes(range(256)) + bytes(range(44))
    def session(port):
        connection = r10_handshake(port)
        connection.sendall(r10_masked_frame(2, payload, bytes.fromhex("01020304")))
        read = b""
        while len(read) < 4 + len(payload):
            read += connection.recv(65536)
        connection.close()
    trace = r10_trace_of(server, session)
    r10_expect_lines(trace, "ran server --trace and sent 300 bytes 00 01 02 ... as binary",
                     ["thread 1 << FIN=1 RSV=000 opcode=2 (binary) MASK=1 key=01020304 length=300 "
                      "(16-bit, 126) 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ..."])


@step_test("describe-close-payload")
def test_trace_shows_the_close_code_and_reason(server):
    def session(port):
        connection = r10_handshake(port)
        connection.sendall(r10_masked_frame(8, close_frame(1000, b"bye"),
                                            bytes.fromhex("deadbeef")))
        read_until_closed(connection)
        connection.close()
    trace = r10_trace_of(server, session)
    r10_expect_lines(trace, "ran server --trace and sent close 1000 'bye'",
                     ['thread 1 << FIN=1 RSV=000 opcode=8 (close) MASK=1 key=deadbeef length=5 '
                      '(7-bit) code=1000 "bye"',
                      'thread 1 >> FIN=1 RSV=000 opcode=8 (close) MASK=0 length=5 (7-bit) '
                      'code=1000 "bye"'])


@step_test("trace-rejected-header")
def test_trace_shows_a_header_it_rejects(server):
    def session(port):
        connection = r10_handshake(port)
        connection.sendall(b"\x81\x05Hello")  # not masked
        read_until_closed(connection)
        connection.close()
    trace = r10_trace_of(server, session)
    r10_expect_lines(trace, "ran server --trace and sent an unmasked text frame 'Hello'",
                     ["thread 1 << FIN=1 RSV=000 opcode=1 (text) MASK=0 length=5 (7-bit)",
                      'thread 1 >> FIN=1 RSV=000 opcode=8 (close) MASK=0 length=30 (7-bit) '
                      'code=1002 "client frames must be masked"'])


# ==== A page for the browser =================================================

@step_test("client-page-option")
def test_unreadable_client_page_stops_the_server(server):
    path = server.process.args[0]
    missing = "/nonexistent/client.html"
    run = subprocess.run([path, "--port", "0", "--client-page", missing], capture_output=True,
                         text=True, timeout=TIMEOUT)
    did = f"started server --client-page {missing}"
    expect(run.returncode == 1, did, "exit status 1 (EXIT_FAILURE)",
           f"{run.returncode}, saying {show(run.stderr)}")
    expect(f"cannot read the client page '{missing}'" in run.stderr, did,
           "a message naming the page it cannot read", show(run.stderr, 120))


@step_test("serve-the-page")
def test_client_page_is_served_at_the_root_only_when_asked(server):
    response = http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    expect(response.startswith(b"HTTP/1.1 400 "), "sent GET / to a server without --client-page",
           "400, as before", show(response))
    page = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web",
                        "client.html")
    with restarted_with(server, "--client-page", page) as own:
        response = http_exchange(own, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        did = "sent GET / to a server started with --client-page web/client.html"
        expect(response.startswith(b"HTTP/1.1 200 OK\r\n"), did, "HTTP/1.1 200 OK",
               show(response))
        expect(b"<title>WebSocket echo client</title>" in response, did,
               "the page, with its <title>", show(response[response.find(b"\r\n\r\n"):]))
        Client(own).close()  # a WebSocket request is still one


@step_test("serve-the-page")
def test_head_of_the_client_page_has_no_body(server):
    page = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web",
                        "client.html")
    with restarted_with(server, "--client-page", page) as own:
        response = http_exchange(own, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = response.partition(b"\r\n\r\n")
        did = "sent HEAD / to a server started with --client-page web/client.html"
        expect(head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: " in head and not body,
               did, "200 OK with a Content-Length and no body", show(response))
        response = http_exchange(own, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        expect(response.startswith(b"HTTP/1.1 400 "), "sent GET /other to the same server",
               "400: only / is the page", show(response))

# ==== Steps of r11 ==================================================

# Tests of r11: old step 11 ("Surviving the real world"), by small step.
# They use test_steps.py's helpers (Server, Client, http_exchange,
# upgrade_request, read_until_closed, restarted_with, close_frame, TIMEOUT)
# and Python's standard library only.

# ==== Helpers of r11 ========================================================

def r11_read_all(connection, seconds):
    """Reads until the peer closes the connection or seconds pass. Returns
    (bytes, closed, seconds waited)."""
    started = time.monotonic()
    data = b""
    while True:
        left = seconds - (time.monotonic() - started)
        if left <= 0:
            return data, False, time.monotonic() - started
        ready, _, _ = select.select([connection], [], [], left)
        if not ready:
            continue
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, True, time.monotonic() - started
        data += chunk


def r11_handshake(server, extra_headers=""):
    """Sends a WebSocket request and reads the response's head. Returns the
    connection (still open, unless the server closed it) and the head."""
    connection = server.connect()
    connection.sendall(upgrade_request(extra_headers=extra_headers))
    return connection, read_head(connection)


def r11_read_frames(client, until_fin):
    """Reads the server's frames with client.read_frame(): until a FIN frame
    (until_fin) or a close frame (not until_fin). Returns (frames, why it
    stopped early: None, or what went wrong)."""
    frames = []
    while True:
        try:
            frame = client.read_frame()
        except Exception as error:  # the connection ended, or a timeout
            return frames, f"{type(error).__name__}: {error}"
        frames.append(frame)
        if (frame[0] and until_fin) or frame[1] == 8:
            return frames, None


def r11_threads(pid):
    """How many threads process pid has (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def r11_wait_for(condition, seconds):
    """Calls condition() until it is true or seconds pass; returns its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def r11_exit_status(process, seconds):
    """The exit status of process, or None if it is still running after seconds."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


@contextlib.contextmanager
def r11_server(server, *options, open_files=None):
    """Stops the test's server and starts the same binary with options, keeping
    what it writes on stderr (its log). open_files lowers the soft limit on
    open files first. Yields an object with port, process, connect() (as
    Server's) and log() (the log so far, as text)."""
    import resource
    import tempfile
    import types
    server.stop()
    path = server.process.args[0]
    log = tempfile.TemporaryFile()

    def lower_limit():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, hard))

    process = subprocess.Popen([path, "--port", "0", *options], stdout=subprocess.PIPE,
                               stderr=log, preexec_fn=lower_limit if open_files else None)
    try:
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        line = process.stdout.readline() if ready else b""
        expect(b":" in line, f"started {os.path.basename(path)} {' '.join(options)}",
               "'Listening on ws://127.0.0.1:PORT'", show(line) if line else "nothing")
        port = int(line.rsplit(b":", 1)[1].split()[0])

        def connect():
            connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection

        def read_log():
            log.seek(0)
            return log.read().decode(errors="replace")

        yield types.SimpleNamespace(port=port, process=process, connect=connect, log=read_log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        log.close()


# ==== Timeouts, and the slow client ========================================

@step_test("read-without-blocking")
def test_request_sent_a_byte_at_a_time_is_read(server):
    connection = server.connect()
    for i, byte in enumerate(upgrade_request()):
        connection.send(bytes([byte]))
        if i % 16 == 0:
            time.sleep(0.005)
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = connection.recv(1000)
        if not chunk:
            break
        response += chunk
    expect(response.startswith(b"HTTP/1.1 101 "),
           "sent a WebSocket handshake one byte per send()", "HTTP/1.1 101 Switching Protocols",
           show(response))
    connection.close()


@step_test("handshake-deadline")
def test_unfinished_request_gets_408_after_10_seconds(server):
    connection = server.connect()
    connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    response, closed, waited = r11_read_all(connection, 15)
    expect(response.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and 9 <= waited <= 13,
           "sent half a request, then nothing",
           "408 Request Timeout after about 10 s (the default --handshake-timeout)",
           f"{show(response) if response else 'nothing'} after {waited:.1f} s")
    connection.close()


@step_test("handshake-timeout-option")
def test_request_that_never_ends_gets_408(server):
    with restarted_with(server, "--handshake-timeout", "1") as own:
        connection = own.connect()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        response = read_until_closed(connection)
        expect(response.startswith(b"HTTP/1.1 408 Request Timeout\r\n"),
               "started the server with --handshake-timeout 1, sent half a request",
               "HTTP/1.1 408 Request Timeout", show(response))


@step_test("handshake-timeout-option")
def test_trickled_request_still_gets_408(server):
    with restarted_with(server, "--handshake-timeout", "2") as own:
        connection = own.connect()
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        response = b""
        while time.monotonic() - started < 8:
            ready, _, _ = select.select([connection], [], [], 0.5)
            if ready:
                response, _, _ = r11_read_all(connection, 3)
                break
            connection.send(b"x")  # one more byte of a header that never ends
        waited = time.monotonic() - started
        expect(response.startswith(b"HTTP/1.1 408 ") and waited < 4.5,
               "started the server with --handshake-timeout 2, sent half a request and then "
               "one byte every 0.5 s", "408 after about 2 s: one deadline for the whole request",
               f"{show(response) if response else 'nothing'} after {waited:.1f} s")


# ==== Keep-alive ============================================================

@step_test("ping-interval-option")
def test_idle_client_is_pinged_then_closed_with_1001(server):
    with restarted_with(server, "--ping-interval", "1") as own:
        client = Client(own)
        fin, opcode, payload = client.read_frame()
        expect(opcode == 9, "started the server with --ping-interval 1, opened a WebSocket, "
               "said nothing", "a ping (opcode 9) after 1 s", f"opcode {opcode}")
        client.expect_close(1001)  # we never answered


@step_test("ping-interval-option")
def test_answered_ping_keeps_the_connection_open(server):
    with restarted_with(server, "--ping-interval", "1") as own:
        client = Client(own)
        for ping in range(2):
            fin, opcode, payload = client.read_frame()
            expect(opcode == 9, f"started the server with --ping-interval 1, answered "
                   f"{ping} ping(s) with a pong", "another ping (opcode 9)",
                   f"opcode {opcode}, payload {show(payload)}")
            client.send_frame(10, payload)
        client.send_frame(1, b"still here")
        expect(client.read_message() == (1, b"still here"), "answered two pings, sent a message",
               "its echo", "something else")
        client.close()


@step_test("send-timeout")
def test_client_that_never_reads_is_let_go(server):
    with restarted_with(server, "--ping-interval", "1") as own:
        pid = own.process.pid
        idle = r11_threads(pid)  # before the client: main, and any helper thread
        connection = socket.socket()
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up at once
        connection.connect(("127.0.0.1", own.port))
        connection.sendall(upgrade_request())
        response, _, _ = r11_read_all(connection, 0.5)  # the 101 (we read no more after it)
        expect(response.startswith(b"HTTP/1.1 101 "), "sent a WebSocket handshake",
               "HTTP/1.1 101 Switching Protocols", show(response))
        connection.settimeout(2)
        frame = struct.pack("!BBQ", 0x82, 0xFF, 65536) + b"\0\0\0\0" + bytes(65536)
        try:
            for _ in range(1000):  # 64 MiB at most: the server stops reading long before
                connection.sendall(frame)
        except (socket.timeout, OSError):
            pass
        threads = r11_wait_for(lambda: r11_threads(pid) == idle, 8)
        expect(threads, "started the server with --ping-interval 1, sent messages and never "
               "read their echoes", "the client's thread gone within 2 intervals (SO_SNDTIMEO)",
               f"{r11_threads(pid)} threads after 8 s, {idle} before the client")
        connection.close()


# ==== Limits ================================================================

@step_test("message-size-limit")
def test_message_over_16_MiB_gets_1009(server):
    client = Client(server)
    # A header announcing 16 MiB + 1 bytes, and none of them.
    client.connection.sendall(struct.pack("!BBQ", 0x82, 0x80 | 127, 16 * 1024 * 1024 + 1)
                              + b"\0\0\0\0")
    client.expect_close(1009)


@step_test("max-message-option")
def test_message_over_the_limit_gets_1009_from_its_header(server):
    with restarted_with(server, "--max-message", "1000") as own:
        client = Client(own)
        # A header announcing 1001 bytes, and none of them.
        client.connection.sendall(struct.pack("!BBH", 0x82, 0x80 | 126, 1001) + b"\0\0\0\0")
        client.expect_close(1009)


@step_test("max-message-option")
def test_fragments_count_toward_the_limit(server):
    with restarted_with(server, "--max-message", "1000") as own:
        client = Client(own)
        client.send_frame(1, b"a" * 600, fin=False)
        fin, opcode, payload = client.read_frame()
        expect((fin, opcode, len(payload)) == (False, 1, 600),
               "started the server with --max-message 1000, sent a first fragment of 600 bytes",
               "its echo (opcode 1, FIN 0, 600 bytes)", f"FIN {int(fin)}, opcode {opcode}, "
               f"{len(payload)} bytes")
        client.connection.sendall(struct.pack("!BBH", 0x00, 0x80 | 126, 600) + b"\0\0\0\0")
        client.expect_close(1009)  # 600 + 600 > 1000, though each frame is under it


@step_test("descriptor-budget")
def test_open_file_limit_is_raised_to_the_hard_limit(server):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with r11_server(server, open_files=min(256, hard)) as own:
        with open(f"/proc/{own.process.pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        soft = line.split()[3]
        expect(soft == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard)),
               f"started the server with a soft limit of {min(256, hard)} open files",
               f"the soft limit raised to the hard limit, {hard}", f"{soft}")


@step_test("max-connections-option", "version-0-2-0")  # the help is rewritten later
def test_help_names_the_connection_limit(server):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    budget = min(hard, 1000000) - 32
    path = server.process.args[0]
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True,
                               timeout=TIMEOUT).stdout
    expect("--max-connections=N" in help_text and f"(default {budget}," in help_text,
           "ran server --help", f"--max-connections=N with (default {budget}, ...): the "
           f"open-file limit {hard} less 32", show(help_text[help_text.find("--max-c"):], 80))
    bad = subprocess.run([path, "--max-connections", "0"], capture_output=True, timeout=TIMEOUT)
    expect(bad.returncode == 2, "ran server --max-connections 0", "exit status 2",
           bad.returncode)


@step_test("connection-limit")
def test_client_over_the_limit_gets_503(server):
    with restarted_with(server, "--max-connections", "1") as own:
        first = Client(own)
        response = http_exchange(own, upgrade_request())
        expect(response.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: " in response,
               "started the server with --max-connections 1, opened one WebSocket, then "
               "asked for a second", "503 Service Unavailable with Retry-After", show(response))
        first.close()


@step_test("connection-limit")
def test_a_place_frees_up_when_a_client_leaves(server):
    with restarted_with(server, "--max-connections", "1") as own:
        first = Client(own)
        first.send_frame(8, close_frame(1000))
        first.expect_close(1000)
        first.close()

        def second_is_accepted():
            connection, response = r11_handshake(own)
            connection.close()
            return response if response.startswith(b"HTTP/1.1 101 ") else None

        response = r11_wait_for(second_is_accepted, 3)
        expect(response, "started the server with --max-connections 1, opened a WebSocket and "
               "closed it", "a second WebSocket accepted (101) within 3 s", "503 every time")


# ==== Origin ================================================================

@step_test("allow-origin-option")
def test_sixteen_allowed_origins_at_most(server):
    path = server.process.args[0]
    server.stop()
    origins = [f"--allow-origin=http://site{i}.example" for i in range(17)]
    too_many = subprocess.run([path, "--port", "0", *origins], capture_output=True, text=True,
                              timeout=TIMEOUT)
    expect(too_many.returncode == 2 and "at most 16" in too_many.stderr,
           "started the server with 17 --allow-origin options",
           "exit status 2 and 'at most 16 --allow-origin options'",
           f"{too_many.returncode}, {show(too_many.stderr)}")
    process = subprocess.Popen([path, "--port", "0", *origins[:16]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        line = process.stdout.readline() if ready else b""
        expect(line.startswith(b"Listening on"), "started the server with 16 --allow-origin "
               "options", "'Listening on ...'", show(line) if line else process.stderr.read())
    finally:
        process.kill()
        process.communicate()


@step_test("refuse-other-origins")
def test_other_origins_get_403(server):
    with restarted_with(server, "--allow-origin", "http://good.example") as own:
        Client(own, extra_headers="Origin: http://good.example\r\n").close()
        response = http_exchange(own, upgrade_request(
            extra_headers="Origin: http://evil.example\r\n"))
        expect(response.startswith(b"HTTP/1.1 403 Forbidden\r\n"),
               "started the server with --allow-origin http://good.example, asked with "
               "Origin: http://evil.example", "HTTP/1.1 403 Forbidden", show(response))


@step_test("refuse-other-origins")
def test_request_without_origin_is_let_through(server):
    with restarted_with(server, "--allow-origin", "http://good.example") as own:
        for extra in ["", "Origin: HTTP://Good.Example\r\n"]:
            connection, response = r11_handshake(own, extra)
            connection.close()
            expect(response.startswith(b"HTTP/1.1 101 "),
                   "started the server with --allow-origin http://good.example, asked with "
                   + (show(extra.strip()) if extra else "no Origin header"),
                   "101 Switching Protocols", show(response))


# ==== Logging ===============================================================

@step_test("log-line")
def test_open_is_logged_with_peer_and_thread(server):
    with r11_server(server) as own:
        client = Client(own)
        port = client.connection.getsockname()[1]
        pattern = (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z open 127\.0\.0\.1:"
                   + str(port) + r" thread 1$")
        import re
        found = r11_wait_for(lambda: re.search(pattern, own.log(), re.M), 3)
        expect(found, "opened a WebSocket from port " + str(port),
               f"a log line 'TIME open 127.0.0.1:{port} thread 1' on stderr",
               show(own.log(), 200) if own.log() else "nothing on stderr")
        client.close()


@step_test("quiet-option")
def test_quiet_logs_nothing(server):
    with r11_server(server, "--quiet") as own:
        client = Client(own)
        client.send_frame(8, close_frame(1000))
        client.expect_close(1000)
        http_exchange(own, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        expect(own.log() == "", "started the server with --quiet, opened and closed a "
               "WebSocket, sent a plain GET", "nothing on stderr", show(own.log(), 200))


@step_test("log-refusals")
def test_refusals_are_logged(server):
    with r11_server(server) as own:
        connection = own.connect()
        port = connection.getsockname()[1]
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_closed(connection)
        line = f"refuse 127.0.0.1:{port} thread 1: 400 not a WebSocket request"
        found = r11_wait_for(lambda: line in own.log(), 3)
        expect(found, f"sent a plain GET from port {port}", f"a log line '... {line} ...'",
               show(own.log(), 200) if own.log() else "nothing on stderr")


@step_test("close-log-line")
def test_close_is_logged_with_code_and_bytes(server):
    with r11_server(server) as own:
        client = Client(own)
        port = client.connection.getsockname()[1]
        client.send_frame(8, close_frame(1000, b"bye"))
        client.expect_close(1000)
        client.close()
        received = len(upgrade_request()) + 2 + 4 + 5  # request, then a masked close frame
        sent = len(client.response) + 2 + 5  # the 101, then our close frame
        line = (f"close 127.0.0.1:{port} thread 1: code 1000, {received} bytes in, "
                f"{sent} out, ")
        found = r11_wait_for(lambda: line in own.log(), 3)
        expect(found, "opened a WebSocket and closed it with 1000 'bye'",
               f"a log line '... {line}N.NNN s'", show(own.log(), 300) if own.log()
               else "nothing on stderr")


# ==== Shutting down =========================================================

@step_test("stop-on-signal")
def test_sigterm_and_sigint_exit_0(server):
    import signal
    server.process.terminate()
    status = r11_exit_status(server.process, TIMEOUT)
    expect(status == 0, "sent SIGTERM to a server with no client", "exit status 0",
           "still running" if status is None else f"exit status {status}")
    with r11_server(server) as own:
        own.process.send_signal(signal.SIGINT)
        status = r11_exit_status(own.process, TIMEOUT)
        expect(status == 0, "sent SIGINT (Ctrl+C) to a server with no client", "exit status 0",
               "still running" if status is None else f"exit status {status}")


@step_test("stop-pipe")
def test_signal_to_any_thread_stops_the_server(server):
    import signal
    pid = server.process.pid
    idle = r11_threads(pid)  # main, and any helper thread of later steps
    client = Client(server)
    r11_wait_for(lambda: r11_threads(pid) == idle + 1, 3)
    threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
    expect(threads, "opened a WebSocket", "a second thread in the server", "none")
    os.kill(threads[0], signal.SIGTERM)  # to the client's thread, not the main one
    time.sleep(0.2)
    try:
        client.send_frame(8, close_frame(1000))
    except OSError:
        pass  # the server has stopped already
    r11_read_all(client.connection, 3)
    client.close()
    status = r11_exit_status(server.process, TIMEOUT)
    expect(status == 0, "sent SIGTERM to the client's thread, then closed the client",
           "the server to stop with exit status 0", "still running" if status is None
           else f"exit status {status}")


@step_test("wait-for-clients")
def test_message_in_flight_at_the_signal_is_echoed_whole(server):
    import threading
    client = Client(server)
    payload = os.urandom(12 * 1024 * 1024)

    def send():
        try:
            client.send_frame(2, payload)
        except OSError:
            pass  # the server is gone: the reading side says so

    sender = threading.Thread(target=send)
    sender.start()
    first = client.read_frame()  # the echo has begun: the message is in flight
    server.process.terminate()
    frames, problem = r11_read_frames(client, until_fin=not first[0])
    sender.join()
    echoed = first[2] + b"".join(payload for fin, opcode, payload in frames)
    expect(echoed == payload and first[1] == 2,
           "sent a 12 MiB message and, once its echo had begun, SIGTERM to the server",
           f"the whole message echoed ({len(payload)} bytes)",
           f"{len(echoed)} bytes" + (f", then {problem}" if problem else ""))
    client.send_frame(8, close_frame(1000))
    fin, opcode, _ = client.read_frame()
    expect(opcode == 8, "closed the connection after the echo", "a close frame",
           f"opcode {opcode}")
    client.close()
    status = r11_exit_status(server.process, TIMEOUT)
    expect(status == 0, "closed the last connection after SIGTERM",
           "the server to exit with status 0",
           "still running" if status is None else f"exit status {status}")


@step_test("refuse-during-shutdown")
def test_request_still_arriving_at_the_signal_gets_503(server):
    pid = server.process.pid
    idle = r11_threads(pid)  # main, and any helper thread of later steps
    connection = server.connect()
    connection.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\n")  # the rest never comes
    r11_wait_for(lambda: r11_threads(pid) == idle + 1, 3)  # the client's thread is there
    server.process.terminate()
    response, closed, waited = r11_read_all(connection, 4)
    expect(response.startswith(b"HTTP/1.1 503 ") and b"shutting down" in response,
           "sent half a request, then SIGTERM to the server",
           "503 Service Unavailable, the server is shutting down",
           f"{show(response) if response else 'nothing'} after {waited:.1f} s")
    connection.close()


@step_test("go-away")
def test_sigterm_closes_with_1001_and_exits_0(server):
    client = Client(server)
    client.send_frame(1, b"before the signal")
    expect(client.read_message() == (1, b"before the signal"), "sent a message",
           "its echo", "something else")
    server.process.terminate()
    fin, opcode, payload = client.read_frame()
    expect((opcode, payload[:2]) == (8, struct.pack("!H", 1001)),
           "sent SIGTERM to the server with one idle WebSocket", "a close frame with 1001",
           f"opcode {opcode}, payload {show(payload)}")
    client.send_frame(8, close_frame(1001))
    rest = read_until_closed(client.connection)
    expect(rest == b"", "answered the 1001 with a close frame", "the end of the connection",
           show(rest))
    status = r11_exit_status(server.process, TIMEOUT)
    expect(status == 0, "answered the server's 1001", "exit status 0",
           "still running" if status is None else f"exit status {status}")


@step_test("go-away")
def test_every_message_received_before_the_signal_is_echoed(server):
    client = Client(server)
    sent = [f"message {i}".encode() for i in range(300)]
    for payload in sent:  # all of them before we read a single echo
        client.send_frame(1, payload)
    server.process.terminate()
    frames, problem = r11_read_frames(client, until_fin=False)
    echoed, message = [], b""
    for fin, opcode, payload in frames:
        if opcode != 8:
            message += payload
            if fin:  # a message may come back in more than one frame
                echoed.append(message)
                message = b""
    close = frames[-1][2] if frames and frames[-1][1] == 8 else None
    code = struct.unpack("!H", close[:2])[0] if close and len(close) >= 2 else None
    expect(echoed == sent and code == 1001, "sent 300 messages, then SIGTERM to the server",
           "all 300 echoed in order, then a close frame with 1001",
           f"{len(echoed)} echoed, then " + (f"close code {code}" if close is not None
                                             else problem))
    client.send_frame(8, close_frame(1001))
    client.close()


@step_test("cut-off-stragglers")
def test_connection_stuck_in_a_message_is_cut_off(server):
    with r11_server(server) as own:
        client = Client(own)
        client.send_frame(1, b"a message that never ends", fin=False)
        client.read_frame()  # its first part, echoed
        started = time.monotonic()
        own.process.terminate()
        status = r11_exit_status(own.process, 10)
        waited = time.monotonic() - started
        log = own.log()
        expect(status == 0 and "cutting off 1 connection(s)" in log
               and log.rstrip().endswith(" stopped"),
               "sent SIGTERM while a client was in the middle of a message",
               "after 5 s 'cutting off 1 connection(s)', then 'stopped', and exit status 0",
               f"exit status {status} after {waited:.1f} s, log {show(log[-160:], 160)}")
        client.close()


@step_test("shutdown-timeout-option")
def test_shutdown_timeout_sets_the_wait(server):
    with r11_server(server, "--shutdown-timeout", "1") as own:
        client = Client(own)
        client.send_frame(1, b"a message that never ends", fin=False)
        client.read_frame()
        started = time.monotonic()
        own.process.terminate()
        status = r11_exit_status(own.process, 10)
        waited = time.monotonic() - started
        expect(status == 0 and waited < 3.5,
               "started the server with --shutdown-timeout 1, sent SIGTERM while a client was "
               "in the middle of a message", "exit status 0 within about 1 s",
               f"exit status {status} after {waited:.1f} s")
        client.close()


@step_test("version-0-2-0", "version-0-2-0")  # 0.3.0 comes with the frame tracer
def test_version_is_0_2_0(server):
    path = server.process.args[0]
    version = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=TIMEOUT).stdout
    expect(version == "server 0.2.0\n", "ran server --version", "'server 0.2.0'",
           show(version))

# ==== Steps of r13 ==================================================

# Tests for range r13 (old step 13, "a second look"), in the style of
# test_steps.py: paste after its helpers. The stand-ins below are removed then.

# ==== Refusing without stalling =============================================

@step_test("refuse-through-lingerer")
def test_refused_clients_do_not_stall_the_accept_loop(server):
    with restarted_with(server, "--max-connections", "1") as own:
        first = Client(own)
        # 50 refused clients that send their request and then read nothing:
        # once, each of them held the accept loop for a tenth of a second.
        refused = []
        try:
            for _ in range(50):
                connection = own.connect()
                connection.sendall(upgrade_request())
                refused.append(connection)
            started = time.monotonic()
            late = own.connect()
            refused.append(late)
            late.sendall(upgrade_request())
            ready, _, _ = select.select([late], [], [], 1)
            waited = time.monotonic() - started
            expect(ready, "with --max-connections 1 and one client held, sent 50 upgrade "
                   "requests that read nothing, then one more",
                   "an answer to the last one within 1 s", f"nothing after {waited:.1f} s")
            for number, connection in enumerate(refused, 1):
                response = read_until_closed(connection)
                expect(response.startswith(b"HTTP/1.1 503 ") and response.endswith(b"\n"),
                       f"read refused client {number}'s answer to the end",
                       "a whole 503 (its body ends in a newline)", show(response))
        finally:
            for connection in refused:
                connection.close()  # so that a stalled server can stop in time
            first.close()


# ==== Nothing the client sends reaches the terminal =========================

def r13_answer(server, request):
    """Sends request on a new connection; returns the answer's status line and
    body. A refusal is read to its end; a 101 only to the end of its head."""
    connection = server.connect()
    connection.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer or answer.startswith(b"HTTP/1.1 4"):
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        answer += chunk
    connection.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def r13_shown(status, body):
    return f"{show(status)} with body {show(body)}" if body else show(status or b"nothing")


@step_test("printable-request-line")
def test_request_line_with_an_escape_sequence_gets_400(server):
    status, body = r13_answer(server, upgrade_request().replace(b"GET /chat ", b"GET /\x1b[2J "))
    expect(status.startswith(b"HTTP/1.1 400 ") and b"malformed request line" in body,
           "sent an upgrade request for the target /\\x1b[2J (an escape sequence that clears "
           "a terminal)", "400 saying 'malformed request line'", r13_shown(status, body))


@step_test("token-header-names")
def test_header_name_that_is_not_a_token_gets_400(server):
    status, body = r13_answer(server, upgrade_request(extra_headers="X-\x1b[2J: 1\r\n"))
    expect(status.startswith(b"HTTP/1.1 400 ") and b"malformed header line" in body,
           "sent an upgrade request with the header name X-\\x1b[2J",
           "400 saying 'malformed header line'", r13_shown(status, body))


@step_test("no-controls-in-values")
def test_header_with_an_escape_sequence_gets_400(server):
    status, body = r13_answer(server, b"GET / HTTP/1.1\r\nHost: x\x1b]0;pwned\x07\r\n\r\n")
    expect(status.startswith(b"HTTP/1.1 400 ") and b"control character" in body,
           "sent GET / with the header Host: x\\x1b]0;pwned\\x07 (sets a terminal's title)",
           "400 saying 'control character in a header value'", r13_shown(status, body))


@step_test("no-controls-in-values")
def test_upgrade_with_a_control_character_in_a_value_gets_400(server):
    status, body = r13_answer(server, upgrade_request(extra_headers="X-Note: a\x01b\r\n"))
    expect(status.startswith(b"HTTP/1.1 400 "),
           "sent an upgrade request with the header X-Note: a\\x01b", "400",
           r13_shown(status, body))


@step_test("escape-traced-headers")
def test_trace_escapes_header_values(server):
    server.stop()
    path = server.process.args[0]
    process = subprocess.Popen([path, "--port", "0", "--quiet", "--trace"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # UTF-8 for "café", and 0x9b: a byte some terminals take as the start of
    # an escape sequence (CSI).
    header = b"X-Name: caf\xc3\xa9 \x9b[2J\r\n"
    try:
        port = int(process.stdout.readline().rsplit(b":", 1)[1].split()[0])
        connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        connection.sendall(upgrade_request()[:-2] + header + b"\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = connection.recv(1)
            if not chunk:
                break
            response += chunk
        connection.close()
    finally:
        process.terminate()
        trace = process.communicate(timeout=TIMEOUT)[1]
    unsafe = [byte for byte in trace if not (0x20 <= byte < 0x7F or byte == 0x0A)]
    lines = [line for line in trace.split(b"\n") if b"X-Name" in line]
    expect(not unsafe and lines and lines[0].endswith(b"<< X-Name: caf\\xc3\\xa9 \\x9b[2J"),
           "ran --trace and sent an upgrade request with the header X-Name: caf\\xc3\\xa9 \\x9b[2J",
           "a trace of printable ASCII only, with the line '<< X-Name: caf\\xc3\\xa9 \\x9b[2J'",
           f"the raw bytes {' '.join(f'{byte:02x}' for byte in unsafe[:8])} in the trace"
           if unsafe else show(lines[0] if lines else trace))


# ==== Checking what can fail ================================================

@step_test("client-page-regular-file")
def test_client_page_that_is_a_folder_is_refused_with_its_reason(server):
    server.stop()
    folder = os.path.dirname(os.path.abspath(__file__))
    run = subprocess.run([server.process.args[0], "--port", "0", "--client-page", folder],
                         capture_output=True, timeout=TIMEOUT)
    expect(run.returncode == 1 and b"not a regular file" in run.stderr,
           f"started the server with --client-page {folder} (a folder)",
           "exit status 1 and 'not a regular file' on stderr",
           f"exit status {run.returncode} and {show(run.stderr.strip(), 120)}")

# ==== Running them ==========================================================

def step_number(reference, steps):
    """A step's number, from its number or its name."""
    if isinstance(reference, int):
        return reference
    for step in steps:
        if step.name == reference:
            return step.number
    raise SystemExit(f"a test names a step '{reference}' that is not in steps/series")


def where_explained(since, steps, index):
    """'chapter 4, "Step 9: The accept key"' for the step a test starts at."""
    entry = index.get(step_number(since, steps))
    if entry is None or entry["chapter"] is None:
        return None
    return f'chapter {entry["chapter"]}, "Step {step_number(since, steps)}: {entry["title"]}"'


# ==== wss:// with OpenSSL ======================================================

# A self-signed certificate for localhost and 127.0.0.1, valid for a hundred
# years, made once with the openssl command (chapter "wss:// with OpenSSL"
# shows how). It is for these tests only: its key is public.
TLS_CERTIFICATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls", "cert.pem")
TLS_KEY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls", "key.pem")
TLS_OPTIONS = ("--tls-cert", TLS_CERTIFICATE, "--tls-key", TLS_KEY)


def server_said(server):
    """What the server has written on stderr so far (its log)."""
    server.errors.seek(0)
    return server.errors.read().decode(errors="replace")


def wait_until_said(server, text, seconds=TIMEOUT):
    deadline = time.monotonic() + seconds
    while text not in server_said(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    return server_said(server)


class OverTls:
    """Stands for a server in Client(): its connections speak TLS, and check
    the server's certificate as a browser would (against TLS_CERTIFICATE)."""

    def __init__(self, server, ragged_eofs=True):
        self.server = server
        self.context = ssl.create_default_context(cafile=TLS_CERTIFICATE)
        if not ragged_eofs:
            # An end of the stream without TLS's close_notify is then an
            # error (Python ignores it by default, as browsers do).
            self.context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self.ragged_eofs = ragged_eofs

    def connect(self):
        raw = self.server.connect()
        return self.context.wrap_socket(raw, server_hostname="localhost",
                                        suppress_ragged_eofs=self.ragged_eofs)


def run_server(server, *options):
    """Runs the step's binary with options until it exits (it should, at
    once); returns (exit status, what it said on stderr)."""
    completed = subprocess.run([server.process.args[0], "--port", "0", *options],
                               capture_output=True, text=True, timeout=TIMEOUT)
    return completed.returncode, completed.stderr.strip()


@step_test("tls-options")
def test_a_certificate_that_cannot_be_read_stops_the_server(server):
    status, said = run_server(server, "--tls-cert", "/no/such/cert.pem", "--tls-key", TLS_KEY)
    expect(status == 1 and "/no/such/cert.pem" in said,
           "started the server with --tls-cert /no/such/cert.pem",
           "exit status 1 and a message naming the file", f"status {status}, {show(said, 200)}")


@step_test("tls-options")
def test_tls_cert_without_tls_key_is_a_usage_error(server):
    status, said = run_server(server, "--tls-cert", TLS_CERTIFICATE)
    expect(status == 2 and "--tls-key" in said, "started the server with --tls-cert alone",
           "exit status 2 and a message naming --tls-key", f"status {status}, {show(said)}")


@step_test("tls-handshake")
def test_the_tls_handshake_completes(server):
    with restarted_with(server, *TLS_OPTIONS) as own:
        try:
            connection = OverTls(own).connect()
        except (ssl.SSLError, OSError) as error:
            expect(False, "connected with TLS, checking the certificate of tests/tls/cert.pem",
                   "a completed TLS handshake", f"{type(error).__name__}: {error}")
        version = connection.version()
        connection.close()
        expect(version in ("TLSv1.2", "TLSv1.3"),
               "connected with TLS", "TLS 1.2 or 1.3", version)


@step_test("tls-handshake")
def test_a_plain_request_to_the_tls_port_gets_400(server):
    with restarted_with(server, *TLS_OPTIONS) as own:
        response = http_exchange(own, upgrade_request())
        expect(response.startswith(b"HTTP/1.1 400 ") and b"wss://" in response,
               "sent a plain (ws://) upgrade request to the TLS port",
               "400 in plain text, saying to use wss://", show(response, 200))


@step_test("tls-handshake")
def test_a_client_silent_during_the_tls_handshake_is_cut_off(server):
    with restarted_with(server, *TLS_OPTIONS, "--handshake-timeout", "1") as own:
        connection = own.connect()
        started = time.monotonic()
        read_until_closed(connection)
        waited = time.monotonic() - started
        connection.close()
        expect(waited < 3, "connected to the TLS port and sent nothing, with "
               "--handshake-timeout 1", "the server to hang up after about 1 s",
               f"{waited:.1f} s")
        said = wait_until_said(own, "did not complete in time")
        expect("TLS handshake failed: the TLS handshake did not complete in time" in said,
               "read the server's log", "a line 'refuse ... TLS handshake failed: the TLS "
               "handshake did not complete in time'", show(said[-300:], 300))


@step_test("tls-receive")
def test_the_request_is_read_through_tls(server):
    with restarted_with(server, *TLS_OPTIONS, "--trace") as own:
        connection = OverTls(own).connect()
        connection.sendall(upgrade_request())
        said = wait_until_said(own, "<< GET /chat HTTP/1.1")
        connection.close()
        expect("<< GET /chat HTTP/1.1" in said, "sent an upgrade request through TLS, with "
               "--trace", "the trace to show '<< GET /chat HTTP/1.1', decrypted",
               show(said[-300:], 300))


@step_test("tls-send")
def test_messages_are_echoed_through_tls(server):
    with restarted_with(server, *TLS_OPTIONS) as own:
        client = Client(OverTls(own))
        try:
            for payload in (b"Hello over TLS", bytes(range(256)) * 400):
                opcode = 0x1 if payload.startswith(b"Hello") else 0x2
                client.send_frame(opcode, payload)
                got_opcode, got = client.read_message()
                expect(got_opcode == opcode and got == payload,
                       f"sent a {len(payload)}-byte message through TLS",
                       "the same message back", f"opcode {got_opcode}, {len(got)} bytes: "
                       f"{show(got)}")
        finally:
            client.close()


@step_test("tls-close-notify")
def test_the_tls_stream_ends_with_close_notify(server):
    with restarted_with(server, *TLS_OPTIONS) as own:
        client = Client(OverTls(own, ragged_eofs=False))
        client.send_frame(0x8, struct.pack("!H", 1000))
        try:
            client.read_frame()  # the server's close frame
            rest = read_until_closed(client.connection)
            outcome = f"the end of the stream after {len(rest)} more bytes"
        except ssl.SSLError as error:
            outcome = f"{type(error).__name__}: {error}"
        finally:
            client.close()
        expect(outcome.startswith("the end of the stream"),
               "closed with 1000 through TLS, then read to the end",
               "a clean end (the server's close_notify alert)", outcome)


@step_test("tls-refuse-at-once")
def test_over_tls_a_client_over_the_limit_is_closed_without_an_answer(server):
    with restarted_with(server, *TLS_OPTIONS, "--max-connections", "1") as own:
        first = Client(OverTls(own))
        try:
            extra = own.connect()
            answer = read_until_closed(extra)
            extra.close()
            expect(answer == b"", "with --max-connections 1 and one TLS client held, "
                   "connected once more", "the connection closed with nothing sent (a plain "
                   "503 would only confuse a TLS client)", show(answer))
            said = wait_until_said(own, "no answer before TLS")
            expect("(closed: no answer before TLS)" in said, "read the server's log",
                   "a line 'refuse ...: too many connections ... (closed: no answer before "
                   "TLS)'", show(said[-300:], 300))
        finally:
            first.close()


@step_test("tls-in-the-log")
def test_the_log_names_the_tls_version(server):
    with restarted_with(server, *TLS_OPTIONS) as own:
        client = Client(OverTls(own))
        said = wait_until_said(own, " over TLSv1.")
        client.close()
        expect(re.search(r"open \S+ thread \d+ over TLSv1\.[23] \S+", said),
               "opened a connection through TLS", "a log line 'open ... thread N over "
               "TLSv1.3 CIPHER'", show(said[-300:], 300))


# ==== Compression (permessage-deflate, RFC 7692) ============================

DEFLATE_TRAILER = b"\x00\x00\xff\xff"


def compressed(data, compressor=None):
    """data deflated as RFC 7692 §7.2.1 says: raw DEFLATE, flushed with a
    sync flush, its last 4 bytes (00 00 ff ff) removed. A compressor kept
    from one message to the next is context takeover."""
    compressor = compressor or zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    expect(out.endswith(DEFLATE_TRAILER), "compressed a message with Python's zlib",
           "output ending in 00 00 ff ff", show(out[-4:]))
    return out[:-4]


def read_frame_with_rsv(client):
    """(rsv, opcode, payload) of the server's next frame: RSV1 is 4."""
    first, second = client.read_exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", client.read_exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", client.read_exactly(8))[0]
    client.last_fin = bool(first & 0x80)
    return (first >> 4) & 0x7, first & 0x0F, client.read_exactly(length)


def deflate_client(own, offer="permessage-deflate"):
    return Client(own, extra_headers=f"Sec-WebSocket-Extensions: {offer}\r\n")


def agreed_extensions(client):
    found = re.search(rb"\r\nSec-WebSocket-Extensions: ([^\r]*)\r\n", client.response)
    return found.group(1).decode() if found else None


def read_echo(client, decompressor):
    """The text of the server's next message, whatever frames it came in,
    inflated if its first frame had RSV1."""
    rsv, opcode, payload = read_frame_with_rsv(client)
    expect(opcode == 0x1, "read the echo", "a text frame", f"opcode {opcode}, {show(payload)}")
    fin = client.last_fin
    while not fin:
        _, continuation, more = read_frame_with_rsv(client)
        expect(continuation == 0, "read the rest of the echo", "a continuation frame",
               f"opcode {continuation}")
        payload += more
        fin = client.last_fin
    if rsv & 4:
        return decompressor.decompress(payload + DEFLATE_TRAILER)
    return payload


def close_code_after_data(client, limit=64 * 1024 * 1024):
    """Skips the data frames the server sends (an echo already under way) up
    to its close frame; returns the close code, or None if limit bytes of
    data came first."""
    seen = 0
    while seen <= limit:
        _, opcode, payload = read_frame_with_rsv(client)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        seen += len(payload)
    return None


@step_test("agree-on-deflate")
def test_an_offer_of_deflate_is_accepted_with_the_option(server):
    with restarted_with(server, "--permessage-deflate") as own:
        client = deflate_client(own, "permessage-deflate; client_max_window_bits")
        agreed = agreed_extensions(client)
        client.close()
        expect(agreed == "permessage-deflate; client_max_window_bits=12",
               "offered 'permessage-deflate; client_max_window_bits' to a server started with "
               "--permessage-deflate", "Sec-WebSocket-Extensions: permessage-deflate; "
               "client_max_window_bits=12", show(agreed))


@step_test("agree-on-deflate")
def test_without_the_option_no_extension_is_agreed(server):
    client = deflate_client(server)
    agreed = agreed_extensions(client)
    client.close()
    expect(agreed is None, "offered permessage-deflate to a server without --permessage-deflate",
           "no Sec-WebSocket-Extensions in the 101", show(agreed))


@step_test("agree-on-deflate")
def test_an_unknown_parameter_declines_that_offer_only(server):
    with restarted_with(server, "--permessage-deflate") as own:
        client = deflate_client(own, "permessage-deflate; x_unknown, permessage-deflate; "
                                "server_no_context_takeover")
        agreed = agreed_extensions(client)
        client.close()
        expect(agreed == "permessage-deflate; server_no_context_takeover",
               "offered permessage-deflate with an unknown parameter, then with "
               "server_no_context_takeover", "the second offer accepted", show(agreed))


@step_test("agree-on-deflate")
def test_a_malformed_extension_list_gets_400(server):
    with restarted_with(server, "--permessage-deflate") as own:
        response = http_exchange(own, upgrade_request(
            extra_headers="Sec-WebSocket-Extensions: permessage-deflate;;\r\n"))
        expect(response.startswith(b"HTTP/1.1 400 "),
               "sent 'Sec-WebSocket-Extensions: permessage-deflate;;'", "400 Bad Request",
               show(response, 120))


@step_test("inflate-messages")
def test_the_rfc_compressed_hello_is_read(server):
    with restarted_with(server, "--permessage-deflate") as own:
        client = deflate_client(own)
        decompressor = zlib.decompressobj(wbits=-15)
        try:
            # RFC 7692 §7.2.3.1: "Hello", compressed, in one frame, then in two.
            client.send_frame(0x1, bytes.fromhex("f248cdc9c90700"), rsv=4)
            first = read_echo(client, decompressor)
            client.send_frame(0x1, bytes.fromhex("f248cd"), fin=False, rsv=4)
            client.send_frame(0x0, bytes.fromhex("c9c90700"))
            second = read_echo(client, decompressor)
        finally:
            client.close()
        expect((first, second) == (b"Hello", b"Hello"), "sent RFC 7692's compressed 'Hello' "
               "(f2 48 cd c9 c9 07 00), whole and then in two frames",
               "'Hello' echoed twice", f"{show(first)} and {show(second)}")


@step_test("inflate-messages")
def test_rsv1_on_a_continuation_frame_is_closed_with_1002(server):
    with restarted_with(server, "--permessage-deflate") as own:
        client = deflate_client(own)
        try:
            client.send_frame(0x1, compressed(b"Hel"), fin=False, rsv=4)
            client.send_frame(0x0, b"lo", rsv=4)
            code = close_code_after_data(client)
        finally:
            client.close()
        expect(code == 1002, "sent a compressed first frame, then a continuation frame with "
               "RSV1 set", "close code 1002 (RFC 7692 §6.1: RSV1 only on a message's first "
               "frame)", code)


@step_test("inflated-bytes-limit")
def test_a_small_message_that_inflates_past_the_limit_gets_1009(server):
    with restarted_with(server, "--permessage-deflate", "--max-message", "100000") as own:
        client = deflate_client(own)
        bomb = compressed(b"\0" * 10_000_000)  # about 10 KB on the wire
        try:
            client.send_frame(0x2, bomb, rsv=4)
            # The echo of the first 100,000 bytes may start before the limit
            # is reached: the server streams.
            code = close_code_after_data(client, limit=200_000)
        finally:
            client.close()
        expect(code == 1009, f"with --max-message 100000, sent {len(bomb):,} compressed bytes "
               "that inflate to 10,000,000", "close code 1009 once 100,000 have come out",
               code if code else "more than 200,000 bytes of echo and no close")


@step_test("final-blocks")
def test_a_message_ending_in_a_final_block_is_read_and_so_is_the_next(server):
    with restarted_with(server, "--permessage-deflate") as own:
        client = deflate_client(own)
        decompressor = zlib.decompressobj(wbits=-15)
        try:
            # RFC 7692 §7.2.3.4: "Hello" in a block with BFINAL set.
            client.send_frame(0x1, bytes.fromhex("f348cdc9c9070000"), rsv=4)
            first = read_echo(client, decompressor)
            client.send_frame(0x1, compressed(b"again"), rsv=4)
            second = read_echo(client, decompressor)
        finally:
            client.close()
        expect((first, second) == (b"Hello", b"again"), "sent 'Hello' in a final (BFINAL) "
               "block, then 'again' compressed", "both echoed", f"{show(first)}, {show(second)}")


@step_test("deflate-messages")
def test_echoes_come_back_compressed_as_the_rfc_shows(server):
    for offer, expected in (("permessage-deflate", ["f248cdc9c90700", "f200110000"]),
                            ("permessage-deflate; server_no_context_takeover",
                             ["f248cdc9c90700", "f248cdc9c90700"])):
        with restarted_with(server, "--permessage-deflate") as own:
            client = deflate_client(own, offer)
            got = []
            try:
                for _ in range(2):
                    client.send_frame(0x1, b"Hello")
                    rsv, opcode, payload = read_frame_with_rsv(client)
                    got.append(f"rsv={rsv} {payload.hex()}")
            finally:
                client.close()
            expect(got == [f"rsv=4 {e}" for e in expected],
                   f"offered '{offer}', sent 'Hello' twice", "RFC 7692 §7.2.3's bytes, "
                   f"with RSV1: {expected}", got)


@step_test("trace-compressed")
def test_the_trace_marks_compressed_frames(server):
    with restarted_with(server, "--permessage-deflate", "--trace") as own:
        client = deflate_client(own)
        client.send_frame(0x1, compressed(b"Hello"), rsv=4)
        read_frame_with_rsv(client)
        said = wait_until_said(own, "(text, compressed)")
        client.close()
        expect("RSV=100 opcode=1 (text, compressed)" in said,
               "sent a compressed text message, with --trace",
               "a line '<< FIN=1 RSV=100 opcode=1 (text, compressed) ...'", show(said[-300:], 300))


# ==== Ten thousand at once ==================================================

@step_test("half-the-buffer")
def test_a_5000_byte_message_comes_back_in_frames_of_at_most_2_KiB(server):
    client = Client(server)
    payload = os.urandom(5000)
    client.send_frame(2, payload)
    sizes, message, fin = [], b"", False
    while not fin:
        fin, opcode, piece = client.read_frame()
        sizes.append(len(piece))
        message += piece
    client.close()
    did = "sent 5,000 random bytes in one binary frame"
    expect(message == payload, did, "the same 5,000 bytes back", f"{len(message):,} other bytes")
    expect(max(sizes) <= 2048 and len(sizes) >= 3, did,
           "at least 3 frames, none over 2,048 bytes (the notifier's buffer is 2 KiB)",
           f"frames of {sizes} bytes")


@step_test("frames-leave-together")
def test_a_first_fragment_comes_back_at_once(server):
    # Held back with MSG_MORE and never pushed, a frame leaves only when the
    # kernel gives up waiting for more, about 200 ms later: the best of three
    # tries tells that from a loaded machine.
    times, payload = [], os.urandom(3000)
    for _ in range(3):
        client = Client(server)
        started = time.monotonic()
        client.send_frame(2, payload, fin=False)
        got = b""
        while len(got) < len(payload):
            got += client.read_frame()[2]
        times.append(time.monotonic() - started)
        client.send_frame(0, b"end")
        fin, opcode, piece = client.read_frame()
        client.close()
        expect(got == payload and fin and piece == b"end",
               "sent the first 3,000 bytes of a binary message (FIN=0), then its last frame 'end'",
               "the 3,000 bytes back, then 'end' with FIN=1", f"{len(got):,} bytes, then "
               f"FIN={int(fin)} {show(piece)}")
    expect(min(times) < 0.1,
           "sent the first 3,000 bytes of a binary message (FIN=0), three times, and waited "
           "for their echo before sending the rest",
           "the echo within 100 ms at least once (a frame held back with MSG_MORE must be "
           "pushed out before the server waits)",
           ", ".join(f"{t * 1000:.0f} ms" for t in times))


@step_test("spare-request-buffers")
def test_two_hundred_handshakes_at_once_each_get_their_own_key(server):
    for round_number in (1, 2):
        keys = [base64.b64encode(os.urandom(16)).decode() for _ in range(200)]
        connections = [server.connect() for _ in keys]
        try:
            for connection, key in zip(connections, keys):
                connection.sendall(upgrade_request(key=key))
            for number, (connection, key) in enumerate(zip(connections, keys)):
                response = read_head(connection)
                accept = f"Sec-WebSocket-Accept: {expected_accept(key)}\r\n".encode()
                expect(response.startswith(b"HTTP/1.1 101 ") and accept in response,
                       f"round {round_number}: sent 200 handshakes at once, each with its own key",
                       f"client {number + 1}: 101 with {show(accept)}", show(response, 200))
        finally:
            for connection in connections:
                connection.close()


@step_test("clean-close-ends-at-once")
def test_a_clean_close_ends_the_connection_while_the_client_keeps_its_socket(server):
    # Once both close frames have crossed, the client sends no more data (RFC
    # 6455 section 5.5.1): with no ping unanswered, the server's thread ends at
    # once. Lingering, it would wait up to 2 s for the client's end-of-file.
    with r11_server(server) as own:
        client = Client(own)
        port = client.connection.getsockname()[1]
        client.send_frame(8, close_frame(1000, b"bye"))
        client.expect_close(1000)
        started = time.monotonic()
        line = f"close 127.0.0.1:{port} thread 1: code 1000"
        found = r11_wait_for(lambda: line in own.log(), 3)
        waited = time.monotonic() - started
        client.close()
        expect(found and waited < 1,
               "closed with 1000 'bye', read the server's close frame and its end-of-file, "
               "and kept the socket open",
               f"the log line '... {line} ...' within 1 s",
               f"it came after {waited:.1f} s" if found else
               (f"nothing like it in 3 s: {show(own.log(), 300)}" if own.log()
                else "nothing on stderr in 3 s"))


@step_test("clean-close-ends-at-once")
def test_a_pong_that_crossed_the_close_gets_no_reset(server):
    # A client that has sent its close frame must still answer a ping that
    # crossed it (RFC 6455 section 5.5.2). So when a ping is unanswered, the
    # server reads on after the close; had it closed its socket, the late pong
    # would be answered with a reset.
    with r11_server(server, "--ping-interval", "1") as own:
        client = Client(own)
        fin, opcode, payload = client.read_frame()
        expect(opcode == 9, "opened a WebSocket with --ping-interval 1 and waited",
               "a ping within a few seconds", f"opcode {opcode}, payload {show(payload)}")
        client.send_frame(8, close_frame(1000, b"bye"))
        client.expect_close(1000)
        client.send_frame(10, payload)
        time.sleep(0.3)
        # A reset that comes after the server's end-of-file is not seen by
        # recv(), which goes on saying end-of-file; the socket keeps it as its
        # pending error.
        error = client.connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        client.close()
        expect(error == 0,
               "got a ping, closed with 1000 'bye' without answering it, read the server's "
               "close frame and end-of-file, then sent the pong",
               "no reset (the socket's pending error 0)",
               f"a reset: the socket's pending error is {os.strerror(error)}")


def run_tests(tests, path, step, label, options=(), explain=None):
    """Runs each test against a fresh server at path (started with options),
    reports each one, and prints "N passed, N failed". tests are functions,
    or (function, where it is explained) pairs. Returns the exit status: 0 if
    all passed."""
    passed = failed = 0
    for entry in tests:
        test, where = entry if isinstance(entry, tuple) else (entry, None)
        see = f" -- see {where}" if where else ""
        server = None
        try:
            server = Server(path, step, options)
            if "step" in test.__code__.co_varnames[:test.__code__.co_argcount]:
                test(server, step)
            else:
                test(server)
            print(f"PASS {label}: {test.__name__}")
            passed += 1
        except (StepFailure, AssertionError) as error:
            print(f"FAIL {label}: {test.__name__}: {error}{see}")
            failed += 1
        except Exception as error:  # a timeout, a reset: say what, and go on
            print(f"FAIL {label}: {test.__name__}: {type(error).__name__}: {error}{see}")
            failed += 1
        finally:
            if server is not None:
                server.stop()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    # --only-new: only the tests that start at this step (the check uses it
    # between chapter ends, where it runs them all).
    only_new = sys.argv[3:] == ["--only-new"]
    if len(sys.argv) != 3 and not only_new:
        print(__doc__)
        return 2
    steps = tutorial.series()
    step = step_number(sys.argv[1] if not sys.argv[1].isdigit() else int(sys.argv[1]), steps)
    if not 1 <= step <= len(steps):
        print(f"there is no step {sys.argv[1]}: the steps are 1 to {len(steps)}")
        return 2
    path = os.path.abspath(sys.argv[2])
    if not os.path.exists(path):
        print(f"no {sys.argv[2]}: build it first (make)")
        return 2
    index = tutorial.step_index()
    tests = []
    for since, until, test in TESTS:
        first = step_number(since, steps)
        last = step_number(until, steps) if until is not None else len(steps)
        if first <= step <= last and (first == step or not only_new):
            tests.append((test, where_explained(since, steps, index)))
    name = steps[step - 1].name
    if not tests and not only_new:
        print(f"No test holds for step {step} ({name}) yet: nothing it adds can be seen from "
              f"outside, so building it without warnings is its proof.")
    return run_tests(tests, path, step, f"step {step} ({name})")


if __name__ == "__main__":
    sys.exit(main())
