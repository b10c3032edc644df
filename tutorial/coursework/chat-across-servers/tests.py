"""Grader checks for the chat-across-servers project (see BRIEF.md).

Each check gets a room of its own: a Redis, two servers on it, and nginx in
front of both (fixture() below). Everything listens on loopback ports picked
here, runs in a temporary folder, and is stopped by its pid. A check says
what it did, what it expected and what came back, naming each client by a
letter and where it is connected: "b on server 1", "e through nginx".
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from test_steps import TIMEOUT, Client, StepFailure, expect, show

LIBS = ["-lhiredis"]
BUILDS_ON = "broadcast"

WAIT = 5  # seconds a message may take to reach every client of the room
STARTUP_SECONDS = 5  # for Redis, each server and nginx to start listening
JOIN_DELAY = 0.5  # for a server's threads to put new clients in the room, on a busy machine too
ORDERED_MESSAGES = 100  # sent by each of two clients in the order check
ORDER_SECONDS = 3 * WAIT  # for the whole order check: sending and receiving them all


# ==== The processes: Redis, two servers, nginx ===============================

def free_port():
    """A loopback port nobody listens on now (the kernel picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_program(name):
    """The path of an installed program; nginx lives in /usr/sbin, which is
    not on every user's PATH."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    expect(path is not None, f"looked for {name}", "it to be installed",
           f"no {name} (Debian: apt-get install {'redis-server' if 'redis' in name else name})")
    return path


class Process:
    """A program the fixture started, with all it prints kept in a file of
    the room's folder, to show it when the program does not start."""

    def __init__(self, name, arguments, folder):
        self.name = name
        self.arguments = arguments
        self.log_path = os.path.join(folder, f"{name.replace(' ', '-')}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)

    def said(self, limit=800):
        with open(self.log_path, errors="replace") as log:
            text = log.read().strip()
        return text if len(text) <= limit else "..." + text[-limit:]

    def wait_until_listening(self, port):
        """Returns once the program accepts connections on port; fails,
        showing what it said, if it exits or takes too long."""
        deadline = time.monotonic() + STARTUP_SECONDS
        answered = False
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            # free_port() let the port go before our program took it: another
            # process may have taken it since, and answered for ours, which then
            # could not listen and exited.
            answered = True
            if self.process.poll() is None:
                return
        status = self.process.poll()
        said = self.said()
        command = " ".join([os.path.basename(self.arguments[0])] + self.arguments[1:])
        if status is None:
            what = "no listener"
        elif answered:
            what = f"exit status {status}, while another program answered on that port"
        else:
            what = f"exit status {status}"
        expect(False, f"started {self.name}: {command}",
               f"it to listen on 127.0.0.1:{port} within {STARTUP_SECONDS} s",
               what + (f"; it said: {said}" if said else "; it said nothing"))

    def stop(self, how=signal.SIGTERM):
        """Stops the program by its pid: with how, then for good after 3 s."""
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Door:
    """Where a client connects: a server, or nginx. Client() only needs
    connect()."""

    def __init__(self, name, port):
        self.name = name
        self.port = port

    def connect(self):
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


NGINX_CONFIG = """\
# nginx in front of the room's two servers, for one check; made by tests.py.
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream chat {{
        server 127.0.0.1:{port1};
        server 127.0.0.1:{port2};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class Room:
    """What fixture() yields: the doors (server 1, server 2, nginx), Redis's
    port, and a way to stop and start server 1."""

    def __init__(self, binary, folder):
        self.binary = binary
        self.folder = folder
        self.processes = []
        self.clients = []
        self.redis_port = free_port()
        self.servers = [Door("server 1", free_port()), Door("server 2", free_port())]
        self.nginx = Door("nginx", free_port())
        self.server_processes = [None, None]

    def start(self, name, arguments, port):
        process = Process(name, arguments, self.folder)
        self.processes.append(process)
        process.wait_until_listening(port)
        return process

    def start_redis(self):
        self.start("redis-server", [find_program("redis-server"), "--port", str(self.redis_port),
                                    "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--dir", self.folder, "--daemonize", "no"], self.redis_port)

    def start_server(self, number):
        """Starts server number (1 or 2) on its port, on the room's Redis."""
        door = self.servers[number - 1]
        self.server_processes[number - 1] = self.start(
            door.name, [self.binary, "--host", "127.0.0.1", "--port", str(door.port),
                        "--redis", f"127.0.0.1:{self.redis_port}"], door.port)

    def stop_server(self, number):
        """Stops server number at once (SIGKILL, by its pid), as a crash
        would: it says goodbye to nobody."""
        self.server_processes[number - 1].stop(signal.SIGKILL)

    def start_nginx(self):
        config = os.path.join(self.folder, "nginx.conf")
        with open(config, "w") as out:
            out.write(NGINX_CONFIG.format(folder=self.folder, port=self.nginx.port,
                                          port1=self.servers[0].port, port2=self.servers[1].port))
        self.start("nginx", [find_program("nginx"), "-p", self.folder, "-c", config,
                             "-e", os.path.join(self.folder, "nginx-error.log")], self.nginx.port)

    def stop_all(self):
        """Closes every client, then stops every process by its pid, the last
        started first. Each on its own: one that fails (ExitStack raises its
        error at the end) does not leave the others running."""
        with contextlib.ExitStack() as stack:
            for process in self.processes:  # ExitStack calls them last first
                stack.callback(process.stop)
            for client in self.clients:
                stack.callback(client.close)


@contextlib.contextmanager
def fixture(binary):
    """Redis, two servers on it, and nginx in front of both, for one check."""
    with tempfile.TemporaryDirectory(prefix="chat-across-servers-") as folder:
        # nginx's workers run as nobody when the grader runs as root.
        os.chmod(folder, 0o755)
        room = Room(binary, folder)
        try:
            room.start_redis()
            room.start_server(1)
            room.start_server(2)
            room.start_nginx()
            yield room
        finally:
            room.stop_all()


# ==== Clients, and what they receive ========================================

class Member:
    """A client of the room, named "a on server 1" in what a check says."""

    def __init__(self, room, letter, door):
        self.letter = letter
        self.place = f"{'through' if door is room.nginx else 'on'} {door.name}"
        self.name = f"{letter} {self.place}"
        self.received = []  # every whole message so far, to spot a second copy
        try:
            self.client = Client(door)
        except StepFailure as failure:  # the handshake went wrong: say whose
            raise StepFailure(f"{self.name}: {failure}") from None
        except OSError as error:
            expect(False, f"connected {self.name} (port {door.port})",
                   "a WebSocket handshake", f"{type(error).__name__}: {error}")
        room.clients.append(self.client)

    def send(self, opcode, payload):
        try:
            self.client.send_frame(opcode, payload)
        except OSError as error:
            expect(False, f"{self.name} sent {describe((opcode, payload))}",
                   "the server to take it", f"{type(error).__name__}: {error}")


def join(room, door, letters):
    """New members, one for each letter, connected through door; waits for
    the server to put them in its room."""
    members = [Member(room, letter, door) for letter in letters]
    time.sleep(JOIN_DELAY)
    return members


def describe(message):
    opcode, payload = message
    kind = {1: "text", 2: "binary", 8: "a close frame"}.get(opcode, f"opcode {opcode}")
    return f"{kind} {show(payload, 40)}" + (f" ({len(payload)} bytes)" if len(payload) > 40 else "")


def next_message(member, deadline):
    """(message, None) for the member's next whole message, or (None, why
    not) when none came by deadline or the connection ended."""
    member.client.connection.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        message = member.client.read_message()
        member.received.append(message)
        return message, None
    except socket.timeout:
        return None, "nothing"
    except StepFailure:  # the server ended the connection
        return None, "the end of its connection"
    except OSError as error:
        return None, f"{type(error).__name__}"


def and_list(items):
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def names(members):
    """"a and b on server 1, and c on server 2": members by where they are."""
    places = []
    for member in members:
        if not places or places[-1][0] != member.place:
            places.append((member.place, []))
        places[-1][1].append(member.letter)
    groups = [f"{and_list(letters)} {place}" for place, letters in places]
    return ", ".join(groups[:-1]) + ", and " + groups[-1] if len(groups) > 1 else groups[0]


def expect_everyone_receives(members, message, did):
    """Each member's next message must be message, within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    wrong = []
    for member in members:
        got, why = next_message(member, deadline)
        if got is None:
            wrong.append(f"{why} at {member.name}")
        elif got != message:
            again = " again (a second copy)" if got in member.received[:-1] else ""
            wrong.append(f"{describe(got)}{again} at {member.name}")
    expect(not wrong, did, f"{names(members)}, each to receive it within {WAIT} s",
           "; ".join(wrong))


def say(member, everyone, opcode, payload):
    """member sends a message; everyone must receive it."""
    member.send(opcode, payload)
    expect_everyone_receives(everyone, (opcode, payload),
                             f"{member.name} sent {describe((opcode, payload))}")


# ==== The checks =============================================================

def test_a_message_reaches_the_clients_of_both_servers(room):
    a, b = join(room, room.servers[0], "ab")
    c, d = join(room, room.servers[1], "cd")
    everyone = [a, b, c, d]
    say(a, everyone, 1, b"hello from server 1")
    say(d, everyone, 2, b"\x00\x01 from server 2 \xff\x00" + bytes(range(256)) * 8)


def test_clients_through_nginx_share_one_room(room):
    """nginx hands connections to the two servers in turn: e, f, g and h
    land on both. x and y, one on each server, make sure of it: every
    message must cross to the other server to reach one of them."""
    x, = join(room, room.servers[0], "x")
    y, = join(room, room.servers[1], "y")
    through_nginx = join(room, room.nginx, "efgh")
    everyone = [x, y] + through_nginx
    for member in through_nginx:
        say(member, everyone, 1, f"hello from {member.name}".encode())
    say(y, everyone, 1, b"hello from y, on server 2")


def read_many(member, count, into, stopped, deadline):
    """Reads up to count messages into the list into (run in a thread), until
    deadline, or until none has come for WAIT seconds; if it stops short, it
    appends to the list stopped why, saying which of the two limits ran out."""
    while len(into) < count:
        quiet_until = time.monotonic() + WAIT
        got, why = next_message(member, min(deadline, quiet_until))
        if got is None:
            if why != "nothing":
                stopped.append(f"then {why}")
            elif quiet_until < deadline:
                stopped.append(f"none more for {WAIT} s")
            else:
                stopped.append(f"none more before the check's {ORDER_SECONDS} s ran out")
            return
        into.append(got)


def sent_in_order(received, sender):
    """None if sender's messages in received are numbered 0, 1, 2, ...;
    else a phrase saying where the order broke, or which message was not
    one that was sent."""
    numbers = []
    for message in received:
        body = message[1]
        if not body.startswith(sender + b" "):
            continue
        try:
            numbers.append(int(body.split(b" ")[1]))
        except ValueError:  # no number where every message sent has one: it was changed
            return f"{describe(message)}, which {sender.decode()} never sent"
    for i, number in enumerate(numbers):
        if number != i:
            return (f"{sender.decode()}'s message {number} where its message {i} belonged"
                    f" (the one before was {numbers[i - 1] if i else 'none'})")
    return None


def test_messages_from_one_client_arrive_in_the_order_sent(room):
    """a on server 1 and c on server 2 each send ORDERED_MESSAGES numbered
    messages of assorted sizes, at the same time. Every client receives all
    of them, each sender's in the order sent; clients of the same server
    receive them in the same order (not the same as the other server's,
    necessarily: BRIEF.md, 'Order')."""
    a, b = join(room, room.servers[0], "ab")
    c, d = join(room, room.servers[1], "cd")
    everyone = [a, b, c, d]
    total = 2 * ORDERED_MESSAGES
    deadline = time.monotonic() + ORDER_SECONDS
    received = [[] for _ in everyone]
    stopped = [[] for _ in everyone]  # why each reader stopped short, if it did
    readers = [threading.Thread(target=read_many, args=(m, total, r, s, deadline), daemon=True)
               for m, r, s in zip(everyone, received, stopped)]
    for reader in readers:
        reader.start()

    failed_sends = []

    def send_numbered(member, sender):
        try:
            for i in range(ORDERED_MESSAGES):
                member.client.send_frame(1, b"%s %03d " % (sender, i) + b"." * (i * 97 % 3000))
        except OSError as error:
            failed_sends.append(f"{member.name} could not send message {i}: {error!r}")

    senders = [threading.Thread(target=send_numbered, args=(a, b"a"), daemon=True),
               threading.Thread(target=send_numbered, args=(c, b"c"), daemon=True)]
    for thread in senders:
        thread.start()
    for thread in senders + readers:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    did = (f"a on server 1 and c on server 2 each sent {ORDERED_MESSAGES} numbered messages at "
           f"the same time")
    expect(not failed_sends, did, "the servers to take them all", "; ".join(failed_sends))
    for member, got, why in zip(everyone, received, stopped):
        why = why[0] if why else f"still reading when the check's {ORDER_SECONDS} s ran out"
        expect(len(got) == total, did, f"{member.name} to receive all {total} of them",
               f"{len(got)} ({why})" + (f", the last {describe(got[-1])}" if got else ""))
        for sender in (b"a", b"c"):
            broken = sent_in_order(got, sender)
            expect(broken is None, did,
                   f"{member.name} to receive each sender's messages in the order sent",
                   broken)
    for first, second in ((0, 1), (2, 3)):
        same = received[first] == received[second]
        at = next((i for i, (x, y) in enumerate(zip(received[first], received[second])) if x != y),
                  None)
        expect(same, did,
               f"{everyone[first].name} and {everyone[second].name}, on the same server, "
               f"to receive them in the same order",
               f"message {at} was {describe(received[first][at])} at {everyone[first].name}, "
               f"{describe(received[second][at])} at {everyone[second].name}" if at is not None
               else "different orders")


def test_the_room_lives_on_when_a_server_goes_away(room):
    a, = join(room, room.servers[0], "a")
    c, d = join(room, room.servers[1], "cd")
    say(a, [a, c, d], 1, b"before server 1 goes")
    room.stop_server(1)
    time.sleep(JOIN_DELAY)
    say(c, [c, d], 1, b"server 1 has gone; still here?")
    # nginx finds server 1 refusing, and hands a new client to server 2.
    e, = join(room, room.nginx, "e")
    say(e, [c, d, e], 1, b"hello from e, through nginx")


def test_a_restarted_server_rejoins_the_room(room):
    c, = join(room, room.servers[1], "c")
    room.stop_server(1)
    room.start_server(1)
    a, b = join(room, room.servers[0], "ab")
    say(c, [a, b, c], 1, b"welcome back, server 1")
    say(a, [a, b, c], 2, b"\x00glad to be back\x00")


TESTS = [
    (test_a_message_reaches_the_clients_of_both_servers,
     "BRIEF.md, check 1, 'How to run it' and 'Binary messages'"),
    (test_clients_through_nginx_share_one_room, "BRIEF.md, check 2 and 'How to run it'"),
    (test_messages_from_one_client_arrive_in_the_order_sent,
     "BRIEF.md, check 3, 'Order' and 'Your own messages come back'"),
    (test_the_room_lives_on_when_a_server_goes_away,
     "BRIEF.md, check 4 and 'A server that goes away, a slow one'"),
    (test_a_restarted_server_rejoins_the_room,
     "BRIEF.md, check 5, 'A server that goes away' and 'Subscribed before listening'"),
]
