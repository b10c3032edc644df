"""Grader checks for the subprotocol project (see BRIEF.md). Each check
says what it did, what it expected and what came back."""
import asyncio
import json
import os

from test_steps import TIMEOUT, Client, close_frame, expect, show

PROTOCOL_LINE = b"\r\nSec-WebSocket-Protocol: json\r\n"


OFFER = "Sec-WebSocket-Protocol: json\r\n"


def compact(value):
    """A JSON value as the brief writes it: {"type":"text","length":5}."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def describe(client, did, expected):
    """The description the server sends for the message just sent, parsed;
    fails saying what came instead of a JSON text message."""
    try:
        opcode, payload = client.read_message()
    except Exception as error:  # a timeout, the end of the connection
        expect(False, did, expected, f"no answer within {TIMEOUT} s ({error or 'timed out'})")
    expect(opcode == 1, did, expected, f"a message with opcode {opcode}: {show(payload)}")
    try:
        return json.loads(payload)
    except ValueError:
        expect(False, did, expected, f"{show(payload)}, which is not JSON")


def agreed(response):
    """The response's status line and Sec-WebSocket-Protocol header, short."""
    lines = response.decode("latin-1").split("\r\n")
    header = [line for line in lines if line.lower().startswith("sec-websocket-protocol")]
    return f"'{lines[0]}' with " + (f"'{header[0]}'" if header else "no Sec-WebSocket-Protocol")


def echo(client, did):
    client.send_frame(1, b"hello")
    try:
        got = client.read_message()
    except Exception as error:  # a timeout, the end of the connection
        got = f"nothing within {TIMEOUT} s ({error or 'timed out'})"
    expect(got == (1, b"hello"), did + "; then sent text 'hello'", "the echo, text 'hello'",
           got if isinstance(got, str) else f"opcode {got[0]}, {show(got[1])}")


def test_json_is_agreed_when_offered(server):
    client = Client(server, OFFER)
    expect(PROTOCOL_LINE in client.response, "offered Sec-WebSocket-Protocol: json",
           "a 101 with 'Sec-WebSocket-Protocol: json'", agreed(client.response))


def test_json_describes_each_message(server):
    client = Client(server, OFFER)
    did = "agreed on json; sent text 'hello'"
    client.send_frame(1, b"hello")
    want = {"type": "text", "length": 5}
    got = describe(client, did, compact(want))
    expect(got == want, did, compact(want), compact(got))
    did = "agreed on json; sent binary 00 01 02"
    client.send_frame(2, b"\x00\x01\x02")
    want = {"type": "binary", "length": 3}
    got = describe(client, did, compact(want))
    expect(got == want, did, compact(want), compact(got))


def test_json_describes_a_message_larger_than_the_buffer_once(server):
    client = Client(server, OFFER)
    client.send_frame(2, os.urandom(100000))
    client.send_frame(1, b"frag", fin=False)
    client.send_frame(0, b"ment", fin=True)
    did = ("agreed on json; sent a binary message of 100,000 bytes, then text 'frag' + "
           "'ment' in two fragments")
    for want in ({"type": "binary", "length": 100000}, {"type": "text", "length": 8}):
        got = describe(client, did, f"one description each, first {compact(want)}")
        expect(got == want, did, f"one description of each whole message: {compact(want)}",
               compact(got))
    client.send_frame(8, close_frame(1000))
    client.expect_close(1000)


def test_json_is_found_in_a_list_and_across_header_lines(server):
    for offer in ("Sec-WebSocket-Protocol: chat, json\r\n",
                  "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: json\r\n"):
        client = Client(server, offer)
        expect(PROTOCOL_LINE in client.response, f"offered {show(offer)}",
               "a 101 with 'Sec-WebSocket-Protocol: json'", agreed(client.response))


def test_an_unknown_subprotocol_is_not_agreed_and_messages_echo(server):
    client = Client(server, "Sec-WebSocket-Protocol: xml\r\n")
    did = "offered only Sec-WebSocket-Protocol: xml"
    expect(b"Sec-WebSocket-Protocol" not in client.response, did,
           "a 101 without Sec-WebSocket-Protocol (RFC 6455 §4.2.2)", agreed(client.response))
    echo(client, did)


def test_without_a_subprotocol_messages_echo(server):
    client = Client(server)
    did = "offered no subprotocol"
    expect(b"Sec-WebSocket-Protocol" not in client.response, did,
           "a 101 without Sec-WebSocket-Protocol", agreed(client.response))
    echo(client, did)


def test_python_websockets_agrees_on_json(server):
    import websockets  # Debian's python3-websockets, a client we did not write

    async def exchange():
        uri = f"ws://127.0.0.1:{server.port}"
        async with websockets.connect(uri, subprotocols=["json"], open_timeout=TIMEOUT) as ws:
            if ws.subprotocol != "json":
                return f"subprotocol {ws.subprotocol!r}"
            await ws.send("κόσμε")
            return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))

    did = "Python's websockets offered subprotocols=['json'] and sent 'κόσμε'"
    want = {"type": "text", "length": len("κόσμε".encode())}
    try:
        got = asyncio.run(exchange())
    except Exception as error:  # websockets refused the handshake, a timeout
        got = f"{type(error).__name__}: {error}"
    expect(got == want, did, f"subprotocol 'json', then {compact(want)}",
           got if isinstance(got, str) else compact(got))


# Each hint names the check in BRIEF.md's "What the grader checks", and the
# part of the brief that helps most.
TESTS = [
    (test_json_is_agreed_when_offered,
     "BRIEF.md, check 1 of 'What the grader checks' (RFC 6455 §4.2.2), and 'Who decides?'"),
    (test_json_describes_each_message,
     "BRIEF.md, check 2 of 'What the grader checks', and the descriptions at the top of "
     "'Project 2: Subprotocol negotiation'"),
    (test_json_describes_a_message_larger_than_the_buffer_once,
     "BRIEF.md, check 3 of 'What the grader checks', and what `length` is at the top of "
     "'Project 2: Subprotocol negotiation'"),
    (test_json_is_found_in_a_list_and_across_header_lines,
     "BRIEF.md, check 4 of 'What the grader checks', and 'Lists'"),
    (test_an_unknown_subprotocol_is_not_agreed_and_messages_echo,
     "BRIEF.md, check 5 of 'What the grader checks' (RFC 6455 §4.2.2), and 'Who decides?'"),
    (test_without_a_subprotocol_messages_echo,
     "BRIEF.md, check 6 of 'What the grader checks'"),
    (test_python_websockets_agrees_on_json,
     "BRIEF.md, check 7 of 'What the grader checks'"),
]
