"""Grader checks for the broadcast project (see BRIEF.md). Each check says
what it did, what it expected and what came back."""
import socket
import threading
import time

from test_steps import TIMEOUT, Client, close_frame, expect, show

# Every check starts the server with a limit on messages, for check 6.
MAX_MESSAGE = 1000000
SERVER_OPTIONS = ["--max-message", str(MAX_MESSAGE)]
JOIN_DELAY = 0.3  # time for the server's threads to put new clients in the room


def described(message):
    """A received (opcode, payload) as a short phrase; receive()'s reason for
    no message as "nothing (reason)"."""
    if isinstance(message, str):
        return f"nothing ({message})"
    opcode, payload = message
    kind = {1: "text", 2: "binary"}.get(opcode, f"opcode {opcode}")
    return f"{kind} {show(payload)} ({len(payload):,} bytes)"


def closing(payload):
    """A close frame's payload as its code and reason."""
    if len(payload) < 2:
        return "no code"
    return f"code {int.from_bytes(payload[:2], 'big')}, reason {show(payload[2:])}"


# Why a client read no (more) messages: receive() waits TIMEOUT s for each.
SILENCE = f"nothing came for {TIMEOUT} s, so the check stopped waiting"


def receive(client):
    """The next whole message client receives, (opcode, payload); or, if none
    comes, the reason as a phrase: SILENCE, or why the read failed."""
    try:
        return client.read_message()
    except (socket.timeout, TimeoutError):
        return SILENCE
    except Exception as error:  # the end of the connection, a frame the client refused
        return f"the read failed: {error or type(error).__name__}"


def join(server, names):
    """Connects one client per name and waits for them to join the room."""
    clients = [Client(server) for _ in names]
    time.sleep(JOIN_DELAY)
    return clients


class Received(list):
    """The messages one client read (in a thread), when the last came, and
    why it read no more."""
    last = None
    stopped = "still reading when the check stopped waiting"

    def counted(self, start=None):
        """How many it read (and, from start, how long they took), and why no
        more: "0 (nothing came for 5 s, so the check stopped waiting)"."""
        took = f" in {self.last - start:.1f} s" if self and start is not None else ""
        return f"{len(self)}{took} ({'then ' if self else ''}{self.stopped})"


def read_messages(client, count, into):
    """Reads count whole messages into `into`, a Received (run in a thread)."""
    for _ in range(count):
        message = receive(client)
        if isinstance(message, str):
            into.stopped = message
            return
        into.append(message)
        into.last = time.monotonic()


def start_readers(clients, count):
    """One reading thread per client, started; returns them, and the
    Received lists they fill."""
    results = [Received() for _ in clients]
    threads = [threading.Thread(target=read_messages, args=(c, count, r), daemon=True)
               for c, r in zip(clients, results)]
    for thread in threads:
        thread.start()
    return threads, results


def test_everyone_in_the_room_receives_a_message(server):
    a, b, c = join(server, "abc")
    for sender, opcode, body in ((c, 1, b"hello, room"), (b, 2, b"\x00\x01")):
        name = "abc"[[a, b, c].index(sender)]
        sender.send_frame(opcode, body)
        for receiver, who in ((a, "a"), (b, "b"), (c, "c")):
            got = receive(receiver)
            expect(got == (opcode, body),
                   f"clients a, b and c joined; client {name} sent {described((opcode, body))}",
                   f"every client (the sender too) to receive it within {TIMEOUT} s",
                   f"client {who} received {described(got)}")


def test_messages_from_two_senders_never_interleave(server):
    members = join(server, "abc")
    threads, results = start_readers(members, 60)

    def body(name, i):
        return f"{name}-{i:02d}-".encode() + bytes([65 + i % 26]) * 3000

    def send(client, name):
        for i in range(30):
            whole = body(name, i)
            client.send_frame(1, whole[:1000], fin=False)
            client.send_frame(0, whole[1000:2000], fin=False)
            client.send_frame(0, whole[2000:], fin=True)

    senders = [threading.Thread(target=send, args=(members[i], "ab"[i])) for i in range(2)]
    for thread in senders:
        thread.start()
    for thread in senders + threads:
        thread.join(timeout=20)
    did = ("clients a and b each sent 30 text messages of 3,007 bytes at the same time, each "
           "in three fragments; a, b and c read")
    for who, received in zip("abc", results):
        expect(len(received) == 60, did, "each to receive all 60 messages within 20 s",
               f"client {who} received {received.counted()}")
        for opcode, payload in received:
            name, number = payload[:1].decode(errors="replace"), payload[2:4]
            whole = number.isdigit() and name in "ab" and payload == body(name, int(number))
            expect(whole and opcode == 1, did, "every message whole, as it was sent",
                   f"client {who} received {described((opcode, payload))}, which is not one "
                   f"of them: pieces of two messages mixed")
    for who, received in zip("bc", results[1:]):
        first = next((i for i, (x, y) in enumerate(zip(results[0], received)) if x != y), None)
        expect(first is None, did, "all three to receive the messages in the same order",
               f"message {first} was {described(results[0][first])} at a but "
               f"{described(received[first])} at {who}" if first is not None else "")


def test_a_client_that_stops_reading_does_not_stall_the_room(server):
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    a, b = join(server, "ab")
    threads, results = start_readers([a, b], 100)
    start = time.monotonic()
    for i in range(100):
        a.send_frame(2, bytes([i]) * 60000)
    for thread in threads:
        thread.join(timeout=30)
    did = ("a client joined and never read; then client a sent 100 binary messages of 60,000 "
           "bytes")
    received = results[1]
    expect(len(received) == 100, did, "client b to receive all 100 within 20 s",
           received.counted(start))
    for i, message in enumerate(received):
        expect(message == (2, bytes([i]) * 60000), did, f"message {i} to be 60,000 bytes {i}",
               described(message))
    took = received.last - start
    expect(took < 20, did, "client b to receive all 100 within 20 s", f"they took {took:.1f} s")
    slow.close()


def test_a_client_leaving_does_not_disturb_the_others(server):
    a, b, c = join(server, "abc")
    c.close()  # without a closing handshake
    time.sleep(JOIN_DELAY)
    a.send_frame(1, b"still here?")
    for receiver, who in ((a, "a"), (b, "b")):
        got = receive(receiver)
        expect(got == (1, b"still here?"),
               "clients a, b and c joined; c closed its socket without a closing handshake; "
               "then a sent 'still here?'", f"a and b to receive it within {TIMEOUT} s",
               f"client {who} received {described(got)}")


def test_the_closing_handshake_still_works(server):
    a = Client(server)
    a.send_frame(8, close_frame(1000, b"bye"))
    a.expect_close(1000)


def test_a_message_over_the_limit_closes_its_sender_with_1009(server):
    a, b, c = join(server, "abc")
    piece = b"x" * (MAX_MESSAGE // 2)
    did = (f"the server runs with --max-message {MAX_MESSAGE}; client a sent a text message "
           f"of {3 * len(piece):,} bytes in three fragments")
    try:
        a.send_frame(1, piece, fin=False)
        a.send_frame(0, piece, fin=False)
        a.send_frame(0, piece, fin=True)
    except OSError:
        pass  # the server may close before it has read it all
    try:
        _, opcode, payload = a.read_frame()
    except (socket.timeout, TimeoutError):
        opcode, payload = None, f"nothing ({SILENCE})"
    except Exception as error:  # the end of the connection
        opcode, payload = None, f"nothing (the read failed: {error or type(error).__name__})"
    expect(opcode == 8 and payload[:2] == (1009).to_bytes(2, "big"), did,
           "a close frame with code 1009 (Message Too Big) for client a, and nothing before it",
           payload if opcode is None else f"a close frame with {closing(payload)}" if opcode == 8
           else f"a frame of {len(payload):,} bytes (opcode {opcode}) first: pieces of the "
           f"message went out before it was whole")
    c.send_frame(1, b"after")
    got = receive(b)
    expect(got == (1, b"after"), did + "; then client c sent 'after'",
           "client b to receive none of a's message, then 'after'",
           f"client b received {described(got)}")


# Each hint names the check in BRIEF.md's "What the grader checks", and the
# part of "Things to think about" that helps most.
TESTS = [
    (test_everyone_in_the_room_receives_a_message,
     "BRIEF.md, check 1 of 'What the grader checks', and 'A shared list'"),
    (test_messages_from_two_senders_never_interleave,
     "BRIEF.md, check 2 of 'What the grader checks', 'Whole messages' and "
     "'Frames from several threads'"),
    (test_a_client_that_stops_reading_does_not_stall_the_room,
     "BRIEF.md, check 3 of 'What the grader checks', and 'One slow client'"),
    (test_a_client_leaving_does_not_disturb_the_others,
     "BRIEF.md, check 4 of 'What the grader checks', and 'Who may free a connection?'"),
    (test_the_closing_handshake_still_works,
     "BRIEF.md, check 5 of 'What the grader checks' (and chapter 13, 'Reading control "
     "frames and the close')"),
    (test_a_message_over_the_limit_closes_its_sender_with_1009,
     "BRIEF.md, check 6 of 'What the grader checks', and 'Whole messages'"),
]
