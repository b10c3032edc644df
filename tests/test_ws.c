/* test_ws.c -- unit tests of ws.c's building blocks, one TCase each:
 * the accept key, request parsing, the handshake checks, frame headers,
 * masking, the UTF-8 validator and close codes. No sockets here. */
#define _POSIX_C_SOURCE 200809L

#include "../ws.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

/* ==== The accept key (RFC 6455 §1.3, §4.2.2) ============================ */

START_TEST(test_accept_key_matches_rfc_example)
{
    char accept[29];
    ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept), 0);
    ck_assert_str_eq(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(test_accept_key_differs_for_another_key)
{
    char accept[29];
    ck_assert_int_eq(ws_accept_key("AQIDBAUGBwgJCgsMDQ4PEA==", accept), 0);
    ck_assert_uint_eq(strlen(accept), 28);
    ck_assert_str_ne(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

/* ==== Parsing a request ================================================= */

static const char GOOD_REQUEST[] = "GET /chat HTTP/1.1\r\n"
                                   "Host: server.example.com\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Origin: http://example.com\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "\r\n";

/* Parses text as if it had just arrived from a socket. */
static int parse(struct ws_request *request, const char *text, struct ws_refusal *refusal)
{
    memset(request, 0, sizeof *request);
    request->length = strlen(text);
    memcpy(request->data, text, request->length);
    return ws_parse_request(request, refusal);
}

START_TEST(test_parse_reads_request_line_and_headers)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, GOOD_REQUEST, &refusal), 0);
    ck_assert_str_eq(request.method, "GET");
    ck_assert_str_eq(request.target, "/chat");
    ck_assert_str_eq(request.version, "HTTP/1.1");
    ck_assert_uint_eq(request.header_count, 6);
    ck_assert_str_eq(ws_request_header(&request, "host"), "server.example.com");
    ck_assert_str_eq(ws_request_header(&request, "SEC-WEBSOCKET-VERSION"), "13");
    ck_assert_ptr_null(ws_request_header(&request, "Cookie"));
    ck_assert_uint_eq(request.header_length, strlen(GOOD_REQUEST));
}
END_TEST

START_TEST(test_the_header_block_ends_only_at_the_blank_line)
{
    const char *request = "GET / HTTP/1.1\r\nHost: a\r\n\r\nFRAME";
    ck_assert_uint_eq(ws_end_of_headers(request, 25), 0);
    ck_assert_uint_eq(ws_end_of_headers(request, 26), 0);
    ck_assert_uint_eq(ws_end_of_headers(request, 27), 27);
    ck_assert_uint_eq(ws_end_of_headers(request, strlen(request)), 27);
    ck_assert_uint_eq(ws_end_of_headers("GET / HTTP/1.1\nHost: a\n\n", 24), 24);
}
END_TEST

START_TEST(test_parse_keeps_bytes_after_the_headers)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, "GET / HTTP/1.1\r\nHost: a\r\n\r\nFRAME", &refusal), 0);
    ck_assert_uint_eq(request.length - request.header_length, 5);
    ck_assert_int_eq(memcmp(request.data + request.header_length, "FRAME", 5), 0);
}
END_TEST

START_TEST(test_parse_accepts_bare_line_feeds_and_trims_values)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, "GET / HTTP/1.1\nHost:   a.b  \nX-Empty:\n\n", &refusal), 0);
    ck_assert_str_eq(ws_request_header(&request, "Host"), "a.b");
    ck_assert_str_eq(ws_request_header(&request, "X-Empty"), "");
}
END_TEST

/* Malformed requests, each with the status it must be refused with. */
static const struct {
    const char *text;
    int status;
} BAD_REQUESTS[] = {
    {"GET /\r\n\r\n", 400},                              /* two words */
    {"GET  / HTTP/1.1\r\n\r\n", 400},                    /* empty target */
    {"GET / HTTP/1.1 extra\r\n\r\n", 400},               /* four words */
    {"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400},    /* header without a colon */
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},         /* space before the colon */
    {"GET / HTTP/1.1\r\n: value\r\n\r\n", 400},          /* empty header name */
    {"GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", 400}, /* obsolete line folding */
    {"\r\n\r\n", 400},                                   /* no request line */
};

START_TEST(test_parse_refuses_malformed_requests)
{
    static struct ws_request request;
    struct ws_refusal refusal = {0, NULL, 0};
    ck_assert_int_eq(parse(&request, BAD_REQUESTS[_i].text, &refusal), -1);
    ck_assert_int_eq(refusal.status, BAD_REQUESTS[_i].status);
    ck_assert_ptr_nonnull(refusal.reason);
}
END_TEST

START_TEST(test_parse_leaves_no_field_unset_when_it_fails)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    memset(&request, 0xAB, sizeof request); /* as garbage as an uninitialised stack */
    request.length = 4;
    memcpy(request.data, "GET ", 4);
    ck_assert_int_eq(ws_parse_request(&request, &refusal), -1);
    ck_assert_int_eq(refusal.status, 400);
    ck_assert_ptr_null(request.method);
    ck_assert_uint_eq(request.header_count, 0);
}
END_TEST

START_TEST(test_parse_refuses_a_nul_byte)
{
    static struct ws_request request;
    struct ws_refusal refusal = {0, NULL, 0};
    memset(&request, 0, sizeof request);
    memcpy(request.data, "GET / HTTP/1.1\r\nA: \0b\r\n\r\n", 26);
    request.length = 26;
    ck_assert_int_eq(ws_parse_request(&request, &refusal), -1);
    ck_assert_int_eq(refusal.status, 400);
}
END_TEST

START_TEST(test_parse_refuses_too_many_headers_with_431)
{
    static struct ws_request request;
    static char text[WS_MAX_REQUEST_SIZE];
    struct ws_refusal refusal = {0, NULL, 0};
    strcpy(text, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= WS_MAX_HEADERS; i++)
        strcat(text, "X: y\r\n");
    strcat(text, "\r\n");
    ck_assert_int_eq(parse(&request, text, &refusal), -1);
    ck_assert_int_eq(refusal.status, 431);
}
END_TEST

/* RFC 9110 §5.5: a field value may not hold control characters (CR, LF and
 * NUL least of all), and RFC 9112 §3: nor may the request line. A server that
 * let them through would hand them to whatever prints the request: an escape
 * sequence reaching the operator's terminal can clear it or set its title. */
static const char *const CONTROL_CHARACTER_REQUESTS[] = {
    "GET / HTTP/1.1\r\nX-Evil: a\x1b[2J\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\x1b]0;pwned\x07\r\n\r\n",
    "GET /\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Del: a\x7f\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Bell\x07: a\r\n\r\n",
};

START_TEST(test_parse_refuses_control_characters_with_400)
{
    static struct ws_request request;
    struct ws_refusal refusal = {0, NULL, 0};
    ck_assert_msg(parse(&request, CONTROL_CHARACTER_REQUESTS[_i], &refusal) == -1,
                  "request %d with a control character was accepted", _i);
    ck_assert_int_eq(refusal.status, 400);
}
END_TEST

START_TEST(test_parse_accepts_tabs_and_bytes_above_ascii_in_values)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(
        parse(&request, "GET / HTTP/1.1\r\nX-A: caf\xc3\xa9\tau lait\r\n\r\n", &refusal), 0);
    ck_assert_str_eq(ws_request_header(&request, "X-A"), "caf\xc3\xa9\tau lait");
}
END_TEST

/* ==== Is it a WebSocket request? (RFC 6455 §4.2.1) ====================== */

/* Builds GOOD_REQUEST with one line replaced (or removed, if replacement is
 * ""), parses it, and returns what ws_is_websocket_request() decided. */
static int handshake_status(const char *line_start, const char *replacement)
{
    static struct ws_request request;
    char text[1024];
    const char *at = strstr(GOOD_REQUEST, line_start);
    ck_assert_ptr_nonnull(at);
    const char *after = strstr(at, "\r\n") + 2;
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - GOOD_REQUEST), GOOD_REQUEST, replacement,
             after);
    struct ws_refusal refusal = {0, NULL, 0};
    ck_assert_int_eq(parse(&request, text, &refusal), 0);
    if (ws_is_websocket_request(&request, &refusal))
        return 101;
    ck_assert_ptr_nonnull(refusal.reason);
    return refusal.status;
}

START_TEST(test_handshake_accepts_the_rfc_example)
{
    ck_assert_int_eq(handshake_status("Origin:", "Origin: http://example.com\r\n"), 101);
}
END_TEST

START_TEST(test_handshake_header_values_are_case_insensitive_lists)
{
    ck_assert_int_eq(handshake_status("Upgrade:", "upgrade: WebSocket\r\n"), 101);
    ck_assert_int_eq(handshake_status("Connection:", "Connection: keep-alive, Upgrade\r\n"), 101);
    ck_assert_int_eq(handshake_status("Connection:", "Connection: keep-alive,upgrade \r\n"), 101);
    ck_assert_int_eq(handshake_status("Connection:", "Connection: Upgraded\r\n"), 400);
}
END_TEST

START_TEST(test_handshake_accepts_any_path_and_later_http)
{
    ck_assert_int_eq(handshake_status("GET", "GET /any/path?x=1 HTTP/1.1\r\n"), 101);
    ck_assert_int_eq(handshake_status("GET", "GET / HTTP/2.0\r\n"), 101);
}
END_TEST

/* Requests that break one rule, and the status each must get. */
static const struct {
    const char *line_start;
    const char *replacement;
    int status;
} BAD_HANDSHAKES[] = {
    {"GET", "POST /chat HTTP/1.1\r\n", 400},
    {"GET", "GET /chat HTTP/1.0\r\n", 400},
    {"GET", "GET /chat HTTPS/1.1\r\n", 400},
    {"Host:", "", 400},
    {"Upgrade:", "", 400},
    {"Upgrade:", "Upgrade: h2c\r\n", 400},
    {"Connection:", "", 400},
    {"Connection:", "Connection: keep-alive\r\n", 400},
    {"Sec-WebSocket-Key:", "", 400},
    {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n", 400}, /* 13 bytes */
    {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n", 400},
    {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n", 400},
    {"Sec-WebSocket-Key:",
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: "
     "dGhlIHNhbXBsZSBub25jZQ==\r\n",
     400},
    {"Sec-WebSocket-Version:", "", 400},
    {"Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8\r\n", 426},
    {"Sec-WebSocket-Version:", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n", 400},
    {"Sec-WebSocket-Version:", "Sec-WebSocket-Version: 14\r\n", 426},
};

START_TEST(test_handshake_refuses_each_broken_rule)
{
    ck_assert_int_eq(
        handshake_status(BAD_HANDSHAKES[_i].line_start, BAD_HANDSHAKES[_i].replacement),
        BAD_HANDSHAKES[_i].status);
}
END_TEST

/* ==== Frame headers (RFC 6455 §5.2) ===================================== */

START_TEST(test_decode_small_unmasked_frame)
{
    /* RFC 6455 §5.7: a single-frame unmasked text message "Hello". */
    const uint8_t bytes[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), 2);
    ck_assert(header.fin);
    ck_assert_uint_eq(header.rsv, 0);
    ck_assert_int_eq(header.opcode, WS_OPCODE_TEXT);
    ck_assert(!header.masked);
    ck_assert_uint_eq(header.payload_length, 5);
}
END_TEST

START_TEST(test_decode_masked_frame_reads_the_key)
{
    /* RFC 6455 §5.7: a single-frame masked text message "Hello". */
    const uint8_t bytes[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), 6);
    ck_assert(header.masked);
    ck_assert_uint_eq(header.payload_length, 5);
    ck_assert_mem_eq(header.mask_key, bytes + 2, 4);
}
END_TEST

START_TEST(test_decode_16_bit_and_64_bit_lengths)
{
    /* RFC 6455 §5.7: 256 bytes of binary data, and 64 KiB. */
    const uint8_t medium[] = {0x82, 0x7E, 0x01, 0x00};
    const uint8_t large[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(medium, sizeof medium, &header), 4);
    ck_assert_uint_eq(header.payload_length, 256);
    ck_assert_int_eq(header.opcode, WS_OPCODE_BINARY);
    ck_assert_int_eq(ws_decode_frame_header(large, sizeof large, &header), 10);
    ck_assert_uint_eq(header.payload_length, 65536);
}
END_TEST

START_TEST(test_decode_reads_fin_rsv_and_opcode_bits)
{
    const uint8_t bytes[] = {0x70 | 0x9, 0x80, 1, 2, 3, 4}; /* RSV1-3 set, FIN clear, ping */
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), 6);
    ck_assert(!header.fin);
    ck_assert_uint_eq(header.rsv, 7);
    ck_assert_int_eq(header.opcode, WS_OPCODE_PING);
}
END_TEST

START_TEST(test_decode_asks_for_more_bytes_until_the_header_is_whole)
{
    const uint8_t bytes[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9};
    struct ws_frame_header header;
    for (size_t available = 0; available < sizeof bytes; available++)
        ck_assert_int_eq(ws_decode_frame_header(bytes, available, &header), 0);
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), 14);
}
END_TEST

START_TEST(test_decode_refuses_length_with_top_bit_set)
{
    const uint8_t bytes[] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0};
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), -1);
}
END_TEST

/* Lengths at the edges of the three forms, with the header size each needs. */
static const struct {
    uint64_t length;
    size_t size;
} LENGTH_FORMS[] = {
    {0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {(uint64_t)1 << 40, 10},
};

START_TEST(test_encode_uses_the_shortest_length_form_and_decodes_back)
{
    struct ws_frame_header header = {
        .fin = true, .opcode = WS_OPCODE_BINARY, .payload_length = LENGTH_FORMS[_i].length};
    uint8_t bytes[WS_MAX_FRAME_HEADER];
    size_t size = ws_encode_frame_header(&header, bytes);
    ck_assert_uint_eq(size, LENGTH_FORMS[_i].size);
    ck_assert_uint_eq(bytes[0], 0x82);
    struct ws_frame_header decoded;
    ck_assert_int_eq(ws_decode_frame_header(bytes, size, &decoded), (int)size);
    ck_assert_uint_eq(decoded.payload_length, LENGTH_FORMS[_i].length);
}
END_TEST

START_TEST(test_encode_writes_the_rfc_bytes)
{
    struct ws_frame_header hello = {.fin = true, .opcode = WS_OPCODE_TEXT, .payload_length = 5};
    struct ws_frame_header medium = {
        .fin = true, .opcode = WS_OPCODE_BINARY, .payload_length = 256};
    struct ws_frame_header masked = {.fin = false,
                                     .rsv = 1,
                                     .opcode = WS_OPCODE_CONTINUATION,
                                     .masked = true,
                                     .mask_key = {1, 2, 3, 4},
                                     .payload_length = 65536};
    const uint8_t masked_bytes[] = {0x10, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    uint8_t bytes[WS_MAX_FRAME_HEADER];
    ck_assert_uint_eq(ws_encode_frame_header(&hello, bytes), 2);
    ck_assert_mem_eq(bytes, "\x81\x05", 2);
    ck_assert_uint_eq(ws_encode_frame_header(&medium, bytes), 4);
    ck_assert_mem_eq(bytes, "\x82\x7E\x01\x00", 4);
    ck_assert_uint_eq(ws_encode_frame_header(&masked, bytes), 14);
    ck_assert_mem_eq(bytes, masked_bytes, 14);
}
END_TEST

/* ==== Masking (RFC 6455 §5.3) =========================================== */

START_TEST(test_mask_matches_rfc_example)
{
    const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t bytes[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_mask(bytes, sizeof bytes, key, 0);
    ck_assert_mem_eq(bytes, "Hello", 5);
    ws_mask(bytes, sizeof bytes, key, 0);
    ck_assert_mem_eq(bytes, "\x7f\x9f\x4d\x51\x58", 5);
}
END_TEST

START_TEST(test_mask_in_pieces_equals_mask_at_once)
{
    const uint8_t key[4] = {0xA1, 0x02, 0xF3, 0x44};
    uint8_t whole[101];
    uint8_t pieces[101];
    for (size_t i = 0; i < sizeof whole; i++)
        whole[i] = pieces[i] = (uint8_t)(i * 7);
    ws_mask(whole, sizeof whole, key, 0);
    ws_mask(pieces, 3, key, 0);
    ws_mask(pieces + 3, 50, key, 3);
    ws_mask(pieces + 53, 48, key, 53);
    ck_assert_mem_eq(whole, pieces, sizeof whole);
}
END_TEST

/* ==== UTF-8 (RFC 6455 §8.1) ============================================= */

static bool utf8_valid(const char *bytes, size_t len)
{
    struct ws_utf8 state = {0};
    return ws_utf8_validate(&state, (const uint8_t *)bytes, len) && ws_utf8_is_complete(&state);
}

static const char *VALID_UTF8[] = {
    "",
    "Hello, world",
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* κόσμε */
    "\xc2\x80",                                     /* U+0080, the first 2-byte character */
    "\xdf\xbf",                                     /* U+07FF */
    "\xe0\xa0\x80",                                 /* U+0800, the first 3-byte character */
    "\xed\x9f\xbf",                                 /* U+D7FF, just below the surrogates */
    "\xee\x80\x80",                                 /* U+E000, just above them */
    "\xef\xbf\xbf",                                 /* U+FFFF */
    "\xf0\x90\x80\x80",                             /* U+10000, the first 4-byte character */
    "\xf4\x8f\xbf\xbf",                             /* U+10FFFF, the last code point */
};

static const char *INVALID_UTF8[] = {
    "\x80",             /* a continuation byte alone */
    "\xbf",             /* another */
    "\xc0\xaf",         /* overlong '/' */
    "\xc1\xbf",         /* overlong U+007F */
    "\xe0\x80\xaf",     /* overlong '/' in 3 bytes */
    "\xe0\x9f\xbf",     /* overlong U+07FF */
    "\xf0\x80\x80\xaf", /* overlong '/' in 4 bytes */
    "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
    "\xed\xa0\x80",     /* U+D800, a surrogate */
    "\xed\xbf\xbf",     /* U+DFFF */
    "\xf4\x90\x80\x80", /* U+110000, above the last code point */
    "\xf5\x80\x80\x80", /* F5 never appears */
    "\xfe",
    "\xff",
    "\xc2",         /* cut short: 2-byte character missing its last byte */
    "\xe1\x80",     /* cut short */
    "\xf1\x80\x80", /* cut short */
    "\xc2\x41",     /* a start byte followed by ASCII */
    "a\xce\xba\xed\xa0\x80z",
};

START_TEST(test_utf8_accepts_valid_text)
{
    ck_assert_msg(utf8_valid(VALID_UTF8[_i], strlen(VALID_UTF8[_i])), "valid UTF-8 #%d refused",
                  _i);
}
END_TEST

START_TEST(test_utf8_refuses_invalid_text)
{
    ck_assert_msg(!utf8_valid(INVALID_UTF8[_i], strlen(INVALID_UTF8[_i])),
                  "invalid UTF-8 #%d accepted", _i);
}
END_TEST

START_TEST(test_utf8_accepts_characters_split_across_pieces)
{
    /* Every split point of a text mixing 1- to 4-byte characters, including
     * the ones inside a character. */
    const char *text = "a\xc2\x80\xe2\x82\xac\xf0\x9f\x98\x80z";
    size_t len = strlen(text);
    for (size_t split = 0; split <= len; split++) {
        struct ws_utf8 state = {0};
        ck_assert(ws_utf8_validate(&state, (const uint8_t *)text, split));
        ck_assert(ws_utf8_validate(&state, (const uint8_t *)text + split, len - split));
        ck_assert_msg(ws_utf8_is_complete(&state), "split at %zu", split);
    }
}
END_TEST

START_TEST(test_utf8_knows_when_a_piece_ends_inside_a_character)
{
    struct ws_utf8 state = {0};
    ck_assert(ws_utf8_validate(&state, (const uint8_t *)"\xf0\x9f", 2));
    ck_assert(!ws_utf8_is_complete(&state));
    ck_assert(ws_utf8_validate(&state, (const uint8_t *)"\x98\x80", 2));
    ck_assert(ws_utf8_is_complete(&state));
}
END_TEST

START_TEST(test_utf8_fails_at_the_first_impossible_byte)
{
    /* F4 90 can never start a valid character (it would be above U+10FFFF),
     * so the validator must say so after those two bytes, not wait for more. */
    struct ws_utf8 state = {0};
    ck_assert(ws_utf8_validate(&state, (const uint8_t *)"ok\xf4", 3));
    ck_assert(!ws_utf8_validate(&state, (const uint8_t *)"\x90", 1));
    struct ws_utf8 surrogate = {0};
    ck_assert(ws_utf8_validate(&surrogate, (const uint8_t *)"\xed", 1));
    ck_assert(!ws_utf8_validate(&surrogate, (const uint8_t *)"\xa0", 1));
}
END_TEST

/* ==== Close codes (RFC 6455 §7.4) ======================================= */

START_TEST(test_close_codes_that_may_be_sent)
{
    const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                              1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        ck_assert_msg(ws_is_valid_close_status(valid[i]), "%u refused", valid[i]);
}
END_TEST

START_TEST(test_close_codes_that_may_not_be_sent)
{
    const unsigned invalid[] = {0,    999,  1004, 1005, 1006, 1015,
                                1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ck_assert_msg(!ws_is_valid_close_status(invalid[i]), "%u accepted", invalid[i]);
}
END_TEST

/* ==== Describing frames (--trace) ======================================= */

START_TEST(test_describe_frame_draws_the_rfc_hello)
{
    /* RFC 6455 §5.7: a masked text frame carrying "Hello". */
    const uint8_t bytes[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    struct ws_frame_header header;
    ck_assert_int_eq(ws_decode_frame_header(bytes, sizeof bytes, &header), 6);
    uint8_t payload[5];
    memcpy(payload, bytes + 6, 5);
    ws_mask(payload, 5, header.mask_key, 0);
    char line[256];
    ws_describe_frame(&header, 6, payload, 5, true, line, sizeof line);
    ck_assert_str_eq(line, "FIN=1 RSV=000 opcode=1 (text) MASK=1 key=37fa213d length=5 (7-bit) "
                           "\"Hello\"");
}
END_TEST

START_TEST(test_describe_frame_names_the_length_form_and_shows_close_codes)
{
    struct ws_frame_header header = {
        .fin = true, .rsv = 4, .opcode = WS_OPCODE_CLOSE, .payload_length = 5};
    const uint8_t payload[] = {0x03, 0xe8, 'b', 'y', 'e'};
    char line[256];
    ws_describe_frame(&header, 10, payload, sizeof payload, false, line, sizeof line);
    ck_assert_str_eq(line, "FIN=1 RSV=100 opcode=8 (close) MASK=0 length=5 (64-bit, 127) "
                           "code=1000 \"bye\"");
}
END_TEST

/* ==== A connection, over a socketpair ================================== */

/* No limits and no timers: what each test below changes, it sets. */
static const struct ws_settings NO_LIMITS = {.stop_fd = -1};

/* The server's end of a socketpair, as a plain (not TLS) transport. */
static struct ws_transport plain_transport(int fd)
{
    struct ws_transport transport;
    ws_transport_init(&transport, fd);
    return transport;
}

/* Accepts GOOD_REQUEST on ends[0] of a new socketpair; the test plays the
 * client on ends[1]. The 101 response is read and dropped. */
static struct ws *accept_on_socketpair(int ends[2], const struct ws_settings *settings)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, GOOD_REQUEST, &refusal), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    struct ws_transport transport = plain_transport(ends[0]);
    struct ws *ws = ws_accept(&transport, &request, settings, &refusal);
    ck_assert_ptr_nonnull(ws);
    char response[256];
    ck_assert_int_gt(recv(ends[1], response, sizeof response, 0), 0);
    return ws;
}

START_TEST(test_a_failed_connection_stays_failed)
{
    int ends[2];
    struct ws *ws = accept_on_socketpair(ends, &NO_LIMITS);
    /* Two masked text frames (key 0): the first is not UTF-8 (RFC 6455 §8.1),
     * the second is fine, and arrives in the same read. Then end-of-file, so
     * that failing the connection does not linger. */
    const char frames[] = "\x81\x81\0\0\0\0\xff"
                          "\x81\x82\0\0\0\0ok";
    ck_assert_int_eq(send(ends[1], frames, sizeof frames - 1, 0), (ssize_t)sizeof frames - 1);
    shutdown(ends[1], SHUT_WR);
    uint8_t buffer[64];
    struct ws_receive_result result;
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), -1);
    ck_assert_int_eq(errno, EPROTO);
    ck_assert_int_eq(ws_get_state(ws), WS_STATE_ABORTED);
    /* Asked again, it must not go on with the bytes it still holds; and
     * every call on an aborted connection fails the same way. */
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), -1);
    ck_assert_int_eq(errno, ECONNABORTED);
    ck_assert_int_eq(ws_send(ws, "x", 1, WS_MESSAGE_TEXT, true), -1);
    ck_assert_int_eq(errno, ECONNABORTED);
    ck_assert_int_eq(ws_close(ws, WS_CLOSE_NORMAL_CLOSURE, NULL), -1);
    ck_assert_int_eq(errno, ECONNABORTED);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* Writes a client frame header with a 16-bit length and mask key 0 (so the
 * payload goes as it is) and returns its size. */
static size_t put_masked_header(uint8_t *out, uint8_t first_byte, uint16_t length)
{
    out[0] = first_byte;
    out[1] = 0x80 | 126;
    out[2] = (uint8_t)(length >> 8);
    out[3] = (uint8_t)length;
    memset(out + 4, 0, 4);
    return 8;
}

START_TEST(test_message_over_the_limit_fails_with_1009_before_its_payload)
{
    struct ws_settings settings = NO_LIMITS;
    settings.max_message_size = 1000;
    int ends[2];
    struct ws *ws = accept_on_socketpair(ends, &settings);
    /* A first fragment of 600 bytes, whole, then a header that announces 401
     * more: 1001 in all. None of the second fragment's payload is sent. */
    static uint8_t frames[8 + 600 + 8];                      /* two 8-byte headers, one payload */
    size_t length = put_masked_header(frames, 0x02, 600);    /* binary, not final */
    length += 600;                                           /* payload: zeros */
    length += put_masked_header(frames + length, 0x80, 401); /* continuation, final */
    ck_assert_int_eq(send(ends[1], frames, length, 0), (ssize_t)length);
    shutdown(ends[1], SHUT_WR);
    uint8_t buffer[4096];
    struct ws_receive_result result;
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), 0);
    ck_assert_uint_eq(result.count, 600);
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), -1);
    uint8_t close_frame[64];
    ck_assert_int_ge(recv(ends[1], close_frame, sizeof close_frame, 0), 4);
    ck_assert_uint_eq(close_frame[0], 0x88);
    ck_assert_uint_eq(close_frame[2] << 8 | close_frame[3], WS_CLOSE_MESSAGE_TOO_BIG);
    struct ws_stats stats;
    ws_get_stats(ws, &stats);
    ck_assert_int_eq(stats.close_status, WS_CLOSE_MESSAGE_TOO_BIG);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

START_TEST(test_message_exactly_at_the_limit_is_delivered)
{
    struct ws_settings settings = NO_LIMITS;
    settings.max_message_size = 125;
    int ends[2];
    struct ws *ws = accept_on_socketpair(ends, &settings);
    static uint8_t frame[2 + 4 + 125] = {0x82, 0x80 | 125};
    ck_assert_int_eq(send(ends[1], frame, sizeof frame, 0), (ssize_t)sizeof frame);
    uint8_t buffer[4096];
    struct ws_receive_result result;
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), 0);
    ck_assert_uint_eq(result.count, 125);
    ck_assert(result.end_of_message);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* A masked text frame with a 2-byte payload (mask key 0): 8 bytes. */
static void send_short_text(int fd, const char text[2])
{
    const uint8_t frame[8] = {0x81, 0x82, 0, 0, 0, 0, (uint8_t)text[0], (uint8_t)text[1]};
    ck_assert_int_eq(send(fd, frame, sizeof frame, 0), (ssize_t)sizeof frame);
}

static void expect_text(struct ws *ws, const char text[2])
{
    uint8_t buffer[64];
    struct ws_receive_result result;
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), 0);
    ck_assert_int_eq(result.close_status, WS_CLOSE_NONE);
    ck_assert_uint_eq(result.count, 2);
    ck_assert_mem_eq(buffer, text, 2);
}

/* The peer's side of a closing handshake the server starts, for a thread:
 * reads the server's close frame on fd, answers it with a close frame of its
 * own, and records the server's status code (-1 if something went wrong). */
struct close_answer {
    int fd;
    int server_status;
};

static void *answer_close(void *arg)
{
    struct close_answer *answer = arg;
    answer->server_status = -1;
    uint8_t frame[WS_MAX_CONTROL_PAYLOAD + 2];
    ssize_t length = recv(answer->fd, frame, sizeof frame, 0);
    if (length < 4 || frame[0] != 0x88)
        return NULL;
    const uint8_t reply[] = {0x88, 0x82, 0, 0, 0, 0, frame[2], frame[3]};
    if (send(answer->fd, reply, sizeof reply, 0) == (ssize_t)sizeof reply)
        answer->server_status = frame[2] << 8 | frame[3];
    return NULL;
}

START_TEST(test_stop_delivers_messages_already_queued_then_closes_with_1001)
{
    int stop[2];
    ck_assert_int_eq(pipe(stop), 0);
    struct ws_settings settings = NO_LIMITS;
    settings.stop_fd = stop[0];
    int ends[2];
    struct ws *ws = accept_on_socketpair(ends, &settings);
    send_short_text(ends[1], "aa");
    expect_text(ws, "aa"); /* the inbox is empty again, between two messages */
    /* Two more messages wait in the kernel, unread, when the stop comes: the
     * peer sent them before it, so they are still delivered. */
    send_short_text(ends[1], "bb");
    send_short_text(ends[1], "cc");
    ck_assert_int_eq(write(stop[1], "x", 1), 1);
    expect_text(ws, "bb");
    expect_text(ws, "cc");
    /* Then the server closes with 1001 and waits for our answer, which
     * another thread gives once the close frame has arrived. */
    pthread_t peer;
    struct close_answer answer = {.fd = ends[1]};
    ck_assert_int_eq(pthread_create(&peer, NULL, answer_close, &answer), 0);
    uint8_t buffer[64];
    struct ws_receive_result result;
    ck_assert_int_eq(ws_receive(ws, buffer, sizeof buffer, &result), 0);
    ck_assert_int_eq(result.close_status, WS_CLOSE_GOING_AWAY);
    pthread_join(peer, NULL);
    ck_assert_int_eq(answer.server_status, WS_CLOSE_GOING_AWAY);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
    close(stop[0]);
    close(stop[1]);
}
END_TEST

START_TEST(test_request_that_never_ends_gets_408)
{
    int ends[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    const char partial[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    ck_assert_int_eq(send(ends[1], partial, sizeof partial - 1, 0), (ssize_t)sizeof partial - 1);
    struct ws_settings settings = NO_LIMITS;
    settings.handshake_timeout_seconds = 1;
    static struct ws_request request;
    struct ws_refusal refusal;
    struct ws_transport transport = plain_transport(ends[0]);
    ck_assert_int_eq(ws_read_request(&transport, &request, &refusal, &settings), -1);
    ck_assert_int_eq(refusal.status, 408);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

START_TEST(test_request_during_shutdown_gets_503)
{
    int ends[2];
    int stop[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    ck_assert_int_eq(pipe(stop), 0);
    ck_assert_int_eq(write(stop[1], "x", 1), 1);
    struct ws_settings settings = NO_LIMITS;
    settings.stop_fd = stop[0];
    static struct ws_request request;
    memset(&request, 0xAB, sizeof request); /* as garbage as an uninitialised stack */
    struct ws_refusal refusal;
    struct ws_transport transport = plain_transport(ends[0]);
    ck_assert_int_eq(ws_read_request(&transport, &request, &refusal, &settings), -1);
    ck_assert_int_eq(refusal.status, 503);
    /* ws_refuse() looks at the method of the request it answers: a request
     * refused before it was parsed must not hold a stale one. */
    ck_assert_ptr_null(request.method);
    ck_assert_uint_eq(request.header_count, 0);
    close(ends[0]);
    close(ends[1]);
    close(stop[0]);
    close(stop[1]);
}
END_TEST

/* ==== permessage-deflate (RFC 7692) ===================================== */

/* Offers (the values of one or two Sec-WebSocket-Extensions headers, the
 * second "" for none) and what ws_negotiate_deflate() must make of them: 1
 * and the response it accepts with, 0 (no offer taken), or -1 (400). */
static const struct {
    const char *first;
    const char *second;
    int result;
    const char *response;
} OFFERS[] = {
    {"permessage-deflate", "", 1, "permessage-deflate"},
    {"permessage-deflate; client_max_window_bits", "", 1,
     "permessage-deflate; client_max_window_bits=12"},
    {"permessage-deflate; client_max_window_bits=10", "", 1,
     "permessage-deflate; client_max_window_bits=10"},
    {"permessage-deflate; client_max_window_bits=\"15\"", "", 1,
     "permessage-deflate; client_max_window_bits=12"},
    {"permessage-deflate; server_max_window_bits=15", "", 1,
     "permessage-deflate; server_max_window_bits=12"},
    {"permessage-deflate; server_max_window_bits = 9 ;client_max_window_bits=8", "", 1,
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8"},
    {"permessage-deflate; client_no_context_takeover; server_no_context_takeover", "", 1,
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
    /* Declined offers, then the next one taken. */
    {"permessage-deflate; server_max_window_bits=8, permessage-deflate", "", 1,
     "permessage-deflate"},
    {"permessage-deflate; server_max_window_bits", "", 0, NULL},
    {"permessage-deflate; server_max_window_bits=16", "", 0, NULL},
    {"permessage-deflate; server_max_window_bits=09", "", 0, NULL},
    {"permessage-deflate; client_max_window_bits=7", "", 0, NULL},
    {"permessage-deflate; server_no_context_takeover=1", "", 0, NULL},
    {"permessage-deflate; mystery", "", 0, NULL},
    {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", "", 0, NULL},
    {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=11,"
     " permessage-deflate; client_no_context_takeover",
     "", 1, "permessage-deflate; client_no_context_takeover"},
    {"x-webkit-deflate-frame, foo; bar=\"baz\"", "permessage-deflate; server_no_context_takeover",
     1, "permessage-deflate; server_no_context_takeover"},
    {", permessage-deflate ,,", "", 1, "permessage-deflate"},
    {"foo", "", 0, NULL},
    /* Not extension lists at all: 400, even after an acceptable offer. */
    {"permessage-deflate;", "", -1, NULL},
    {"permessage-deflate; =1", "", -1, NULL},
    {"permessage deflate", "", -1, NULL},
    {"permessage-deflate; client_max_window_bits=\"10", "", -1, NULL},
    {"foo; bar=\"a b\"", "", -1, NULL},
    {"permessage-deflate; a=b=c", "", -1, NULL},
    {"permessage-deflate", "@", -1, NULL},
};

START_TEST(test_negotiation_takes_the_first_acceptable_offer)
{
    static struct ws_request request;
    char text[1024];
    int used = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: %s\r\n",
                        OFFERS[_i].first);
    if (OFFERS[_i].second[0] != '\0')
        used += snprintf(text + used, sizeof text - (size_t)used,
                         "Sec-WebSocket-Extensions: %s\r\n", OFFERS[_i].second);
    snprintf(text + used, sizeof text - (size_t)used, "\r\n");
    struct ws_refusal refusal = {0, NULL, 0};
    ck_assert_int_eq(parse(&request, text, &refusal), 0);
    struct ws_deflate_params params;
    int result = ws_negotiate_deflate(&request, &params, &refusal);
    ck_assert_msg(result == OFFERS[_i].result, "offer \"%s\" + \"%s\": expected %d, got %d",
                  OFFERS[_i].first, OFFERS[_i].second, OFFERS[_i].result, result);
    if (result < 0)
        ck_assert_int_eq(refusal.status, 400);
    if (result > 0) {
        char response[WS_MAX_DEFLATE_RESPONSE];
        ws_format_deflate_response(&params, response);
        ck_assert_str_eq(response, OFFERS[_i].response);
    }
}
END_TEST

START_TEST(test_negotiation_sets_the_windows_we_compress_and_inflate_with)
{
    static struct ws_request request;
    struct ws_refusal refusal;
    struct ws_deflate_params params;
    ck_assert_int_eq(parse(&request,
                           "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                           &refusal),
                     0);
    ck_assert_int_eq(ws_negotiate_deflate(&request, &params, &refusal), 1);
    ck_assert_uint_eq(params.server_window_bits, 12); /* ours, to save memory */
    ck_assert_uint_eq(params.client_window_bits, 15); /* the client may use any */
    ck_assert(!params.name_server_window_bits && !params.name_client_window_bits);
    ck_assert_int_eq(parse(&request,
                           "GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; "
                           "server_max_window_bits=10; client_max_window_bits=9\r\n\r\n",
                           &refusal),
                     0);
    ck_assert_int_eq(ws_negotiate_deflate(&request, &params, &refusal), 1);
    ck_assert_uint_eq(params.server_window_bits, 10);
    ck_assert_uint_eq(params.client_window_bits, 9);
    ck_assert_int_eq(parse(&request, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &refusal), 0);
    ck_assert_int_eq(ws_negotiate_deflate(&request, &params, &refusal), 0);
}
END_TEST

/* The mask key of the client frames below: the RFC 6455 §5.7 example's. */
static const uint8_t CLIENT_KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Sends a client frame: first_byte (FIN, RSV, opcode), then the payload,
 * masked with CLIENT_KEY. */
static void send_client_frame(int fd, uint8_t first_byte, const uint8_t *payload, size_t length)
{
    struct ws_frame_header header = {.fin = (first_byte & 0x80) != 0,
                                     .rsv = (first_byte >> 4) & 7,
                                     .opcode = (enum ws_opcode)(first_byte & 0x0F),
                                     .masked = true,
                                     .payload_length = length};
    memcpy(header.mask_key, CLIENT_KEY, 4);
    uint8_t *frame = malloc(WS_MAX_FRAME_HEADER + length + 1);
    ck_assert_ptr_nonnull(frame);
    size_t size = ws_encode_frame_header(&header, frame);
    if (length > 0)
        memcpy(frame + size, payload, length);
    ws_mask(frame + size, length, CLIENT_KEY, 0);
    ck_assert_int_eq(send(fd, frame, size + length, 0), (ssize_t)(size + length));
    free(frame);
}

/* Accepts a handshake offering extensions on a new socketpair, with
 * --permessage-deflate, and returns the server's 101 response in response. */
static struct ws *accept_offer(int ends[2], const char *extensions, struct ws_settings *settings,
                               char *response, size_t size)
{
    static struct ws_request request;
    char text[1024];
    snprintf(text, sizeof text, "%.*sSec-WebSocket-Extensions: %s\r\n\r\n",
             (int)(sizeof GOOD_REQUEST - 3), GOOD_REQUEST, extensions);
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, text, &refusal), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    /* A test waiting for bytes that never come fails after 2 s, saying so. */
    struct timeval timeout = {.tv_sec = 2};
    ck_assert_int_eq(setsockopt(ends[1], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), 0);
    settings->permessage_deflate = true;
    struct ws_transport transport = plain_transport(ends[0]);
    struct ws *ws = ws_accept(&transport, &request, settings, &refusal);
    ck_assert_ptr_nonnull(ws);
    ssize_t got = recv(ends[1], response, size - 1, 0);
    ck_assert_int_gt(got, 0);
    response[got] = '\0';
    return ws;
}

/* Receives one whole message, len bytes at a time, into out. */
static size_t receive_message(struct ws *ws, size_t len, uint8_t *out, size_t size)
{
    size_t total = 0;
    struct ws_receive_result result;
    uint8_t *buffer = malloc(len);
    ck_assert_ptr_nonnull(buffer);
    do {
        ck_assert_int_eq(ws_receive(ws, buffer, len, &result), 0);
        ck_assert_int_eq(result.close_status, WS_CLOSE_NONE);
        ck_assert_uint_le(result.count, len);
        ck_assert_uint_le(total + result.count, size);
        memcpy(out + total, buffer, result.count);
        total += result.count;
    } while (!result.end_of_message);
    free(buffer);
    return total;
}

/* RFC 7692 §7.2.3: "Hello", compressed in each of the ways the RFC shows.
 * Each frame is a first byte and a payload (a NULL payload ends the list). */
static const struct {
    const char *name;
    struct {
        uint8_t first_byte;
        const char *payload;
        size_t length;
    } frames[3];
} HELLOS[] = {
    {"one frame (§7.2.3.1)", {{0xc1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7}}},
    {"two fragments (§7.2.3.1)", {{0x41, "\xf2\x48\xcd", 3}, {0x80, "\xc9\xc9\x07\x00", 4}}},
    {"a stored block (§7.2.3.2)", {{0xc1, "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 11}}},
    {"BFINAL set (§7.2.3.3)", {{0xc1, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8}}},
    {"two blocks (§7.2.3.4)", {{0xc1, "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", 13}}},
};

/* Each example, received with a 4 KiB buffer and with a 1-byte one. */
START_TEST(test_receives_the_rfc_7692_hello_examples)
{
    size_t example = (size_t)_i / 2;
    size_t len = _i % 2 == 0 ? 4096 : 1;
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, "permessage-deflate", &settings, response, sizeof response);
    ck_assert_msg(strstr(response, "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
                  "expected the offer accepted, got: %s", response);
    for (size_t i = 0; i < 3 && HELLOS[example].frames[i].payload != NULL; i++)
        send_client_frame(ends[1], HELLOS[example].frames[i].first_byte,
                          (const uint8_t *)HELLOS[example].frames[i].payload,
                          HELLOS[example].frames[i].length);
    uint8_t message[64];
    size_t length = receive_message(ws, len, message, sizeof message);
    ck_assert_msg(length == 5 && memcmp(message, "Hello", 5) == 0,
                  "%s with %zu-byte reads: expected \"Hello\", got %zu bytes \"%.*s\"",
                  HELLOS[example].name, len, length, (int)length, (const char *)message);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

START_TEST(test_a_message_after_a_final_block_still_refers_back)
{
    /* The BFINAL example, then "Hello" again as a sender with context
     * takeover writes it: a reference to the 5 bytes before it. */
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, "permessage-deflate", &settings, response, sizeof response);
    send_client_frame(ends[1], 0xc1, (const uint8_t *)"\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8);
    send_client_frame(ends[1], 0xc1, (const uint8_t *)"\xf2\x00\x11\x00\x00", 5);
    uint8_t message[64];
    ck_assert_uint_eq(receive_message(ws, 4096, message, sizeof message), 5);
    size_t length = receive_message(ws, 4096, message, sizeof message);
    ck_assert_msg(length == 5 && memcmp(message, "Hello", 5) == 0,
                  "expected \"Hello\", got %zu bytes", length);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* Reads exactly length bytes from fd. */
static void read_exactly(int fd, uint8_t *out, size_t length)
{
    for (size_t got = 0; got < length;) {
        ssize_t count = recv(fd, out + got, length - got, 0);
        ck_assert_msg(count > 0, "expected %zu bytes from the server, got %zu", length, got);
        got += (size_t)count;
    }
}

/* Sends "Hello" twice and checks the frames against the RFC's bytes. */
static void check_two_hellos(const char *offer, const uint8_t *second, size_t second_length)
{
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, offer, &settings, response, sizeof response);
    ck_assert_int_eq(ws_send(ws, "Hello", 5, WS_MESSAGE_TEXT, true), 0);
    ck_assert_int_eq(ws_send(ws, "Hello", 5, WS_MESSAGE_TEXT, true), 0);
    const uint8_t first[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    uint8_t got[64];
    read_exactly(ends[1], got, sizeof first + second_length);
    ck_assert_mem_eq(got, first, sizeof first);
    ck_assert_mem_eq(got + sizeof first, second, second_length);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}

START_TEST(test_sends_hello_twice_referring_back_with_context_takeover)
{
    /* RFC 7692 §7.2.3.2: the second "Hello" is a back-reference. */
    const uint8_t second[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
    check_two_hellos("permessage-deflate", second, sizeof second);
}
END_TEST

START_TEST(test_sends_hello_twice_alike_with_server_no_context_takeover)
{
    const uint8_t second[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    check_two_hellos("permessage-deflate; server_no_context_takeover", second, sizeof second);
}
END_TEST

START_TEST(test_sends_empty_messages_as_one_zero_byte)
{
    /* RFC 7692 §7.2.3.6, first on a fresh stream, then right after another
     * message, where zlib has nothing to flush. */
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, "permessage-deflate", &settings, response, sizeof response);
    ck_assert_int_eq(ws_send(ws, "", 0, WS_MESSAGE_BINARY, true), 0);
    ck_assert_int_eq(ws_send(ws, "", 0, WS_MESSAGE_TEXT, true), 0);
    const uint8_t expected[] = {0xc2, 0x01, 0x00, 0xc1, 0x01, 0x00};
    uint8_t got[sizeof expected];
    read_exactly(ends[1], got, sizeof got);
    ck_assert_mem_eq(got, expected, sizeof expected);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* Inflates a raw DEFLATE stream with the trailer appended, as a client does;
 * returns the inflated size. */
static size_t client_inflate(const uint8_t *in, size_t length, uint8_t *out, size_t size)
{
    z_stream stream = {0};
    ck_assert_int_eq(inflateInit2(&stream, -15), Z_OK);
    uint8_t trailer[4] = {0x00, 0x00, 0xff, 0xff};
    stream.next_out = out;
    stream.avail_out = (uInt)size;
    stream.next_in = (Bytef *)in;
    stream.avail_in = (uInt)length;
    ck_assert_int_ne(inflate(&stream, Z_SYNC_FLUSH), Z_DATA_ERROR);
    stream.next_in = trailer;
    stream.avail_in = 4;
    ck_assert_int_ne(inflate(&stream, Z_SYNC_FLUSH), Z_DATA_ERROR);
    size_t produced = size - stream.avail_out;
    inflateEnd(&stream);
    return produced;
}

START_TEST(test_a_large_message_sent_in_chunks_inflates_back_whole)
{
    /* 64 KiB of incompressible bytes, sent in 4 KiB chunks: the output fills
     * the 4 KiB buffer again and again, and the trailer may straddle two
     * fillings. Only the first frame has RSV1 (RFC 7692 §6.1). */
    enum { SIZE = 64 * 1024, CHUNK = 4096 };
    static uint8_t message[SIZE];
    static uint8_t wire[2 * SIZE];
    static uint8_t payload[2 * SIZE];
    static uint8_t inflated[2 * SIZE];
    uint32_t seed = 12345;
    for (size_t i = 0; i < SIZE; i++)
        message[i] = (uint8_t)((seed = seed * 1103515245 + 12345) >> 16);
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, "permessage-deflate", &settings, response, sizeof response);
    for (size_t at = 0; at < SIZE; at += CHUNK)
        ck_assert_int_eq(ws_send(ws, message + at, CHUNK, WS_MESSAGE_BINARY, at + CHUNK == SIZE),
                         0);
    shutdown(ends[0], SHUT_WR);
    size_t wire_length = 0;
    ssize_t got;
    while ((got = recv(ends[1], wire + wire_length, sizeof wire - wire_length, 0)) > 0)
        wire_length += (size_t)got;
    size_t payload_length = 0;
    int frames = 0;
    for (size_t at = 0; at < wire_length; frames++) {
        struct ws_frame_header header;
        int size = ws_decode_frame_header(wire + at, wire_length - at, &header);
        ck_assert_int_gt(size, 0);
        ck_assert_uint_eq(header.rsv, frames == 0 ? WS_RSV1 : 0);
        ck_assert_int_eq(header.opcode, frames == 0 ? WS_OPCODE_BINARY : WS_OPCODE_CONTINUATION);
        memcpy(payload + payload_length, wire + at + size, header.payload_length);
        payload_length += header.payload_length;
        at += (size_t)size + header.payload_length;
        ck_assert(header.fin == (at == wire_length));
    }
    ck_assert_int_gt(frames, 1);
    size_t length = client_inflate(payload, payload_length, inflated, sizeof inflated);
    ck_assert_uint_eq(length, SIZE);
    ck_assert_mem_eq(inflated, message, SIZE);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* Deflates length bytes as a client does (raw DEFLATE, sync flush, trailer
 * removed) into out; returns the compressed size. */
static size_t client_deflate(const void *in, size_t length, uint8_t *out, size_t size)
{
    z_stream stream = {0};
    ck_assert_int_eq(deflateInit2(&stream, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    stream.next_in = (Bytef *)in;
    stream.avail_in = (uInt)length;
    stream.next_out = out;
    stream.avail_out = (uInt)size;
    ck_assert_int_eq(deflate(&stream, Z_SYNC_FLUSH), Z_OK);
    size_t produced = size - stream.avail_out;
    deflateEnd(&stream);
    ck_assert(produced >= 4 && memcmp(out + produced - 4, "\x00\x00\xff\xff", 4) == 0);
    return produced - 4;
}

START_TEST(test_a_long_compressed_message_arrives_whole_a_byte_at_a_time)
{
    static char text[3000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "abcabdabe"[i % 9];
    static uint8_t compressed[4096];
    size_t length = client_deflate(text, sizeof text, compressed, sizeof compressed);
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends, "permessage-deflate", &settings, response, sizeof response);
    send_client_frame(ends[1], 0xc1, compressed, length);
    static uint8_t message[4096];
    ck_assert_uint_eq(receive_message(ws, 1, message, sizeof message), sizeof text);
    ck_assert_mem_eq(message, text, sizeof text);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* Offers "permessage-deflate" (or not, when offer is NULL), sends the frames
 * (each a first byte and payload), and expects ws_receive() to fail the
 * connection with close code status. */
static void expect_failure(const char *offer, const uint8_t *first_bytes, const uint8_t *payload,
                           size_t length, int frames, int status, uint64_t limit)
{
    struct ws_settings settings = NO_LIMITS;
    settings.max_message_size = limit;
    int ends[2];
    char response[512];
    struct ws *ws =
        accept_offer(ends, offer != NULL ? offer : "x-none", &settings, response, sizeof response);
    for (int i = 0; i < frames; i++)
        send_client_frame(ends[1], first_bytes[i], payload, length);
    shutdown(ends[1], SHUT_WR);
    uint8_t buffer[4096];
    struct ws_receive_result result;
    int received;
    while ((received = ws_receive(ws, buffer, sizeof buffer, &result)) == 0 &&
           result.close_status == WS_CLOSE_NONE) {
    }
    ck_assert_int_eq(received, -1);
    uint8_t close_frame[WS_MAX_CONTROL_PAYLOAD + 2];
    ssize_t got;
    got = recv(ends[1], close_frame, sizeof close_frame, 0);
    ck_assert_msg(got >= 4 && close_frame[0] == 0x88,
                  "expected a close frame with %d, got %zd bytes", status, got);
    int code = close_frame[2] << 8 | close_frame[3];
    ck_assert_msg(code == status, "expected close %d, got %d (\"%.*s\")", status, code,
                  (int)got - 4, (const char *)close_frame + 4);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}

START_TEST(test_rsv1_where_it_may_not_be_fails_with_1002)
{
    const uint8_t hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    /* Not negotiated. */
    expect_failure(NULL, (const uint8_t[]){0xc1}, hello, sizeof hello, 1, 1002, 0);
    /* On a continuation frame (RFC 7692 §6.1). */
    expect_failure("permessage-deflate", (const uint8_t[]){0x41, 0xc0}, hello, 3, 2, 1002, 0);
    /* On a control frame. */
    expect_failure("permessage-deflate", (const uint8_t[]){0xc9}, hello, 3, 1, 1002, 0);
    /* RSV2 and RSV3 are never ours. */
    expect_failure("permessage-deflate", (const uint8_t[]){0xe1}, hello, sizeof hello, 1, 1002, 0);
    expect_failure("permessage-deflate", (const uint8_t[]){0x91}, hello, sizeof hello, 1, 1002, 0);
}
END_TEST

START_TEST(test_corrupt_compressed_data_fails_with_1007)
{
    /* 0x06: a block of type 3, which does not exist (RFC 1951 §3.2.3). */
    expect_failure("permessage-deflate", (const uint8_t[]){0xc2}, (const uint8_t *)"\x06\x00", 2, 1,
                   1007, 0);
    /* "He" and no more: the message ends inside a block. */
    expect_failure("permessage-deflate", (const uint8_t[]){0xc2}, (const uint8_t *)"\xf2\x48", 2, 1,
                   1007, 0);
    /* Text that inflates to a byte that is not UTF-8. */
    uint8_t compressed[64];
    size_t length = client_deflate("ok\xff", 3, compressed, sizeof compressed);
    expect_failure("permessage-deflate", (const uint8_t[]){0xc1}, compressed, length, 1, 1007, 0);
}
END_TEST

START_TEST(test_a_message_that_inflates_past_the_limit_fails_with_1009)
{
    /* 4 MiB of zeros deflate to about 4 KiB, a tenth of the 40 KiB limit; the
     * limit counts what they inflate to. */
    static uint8_t zeros[4 * 1024 * 1024];
    static uint8_t compressed[64 * 1024];
    size_t length = client_deflate(zeros, sizeof zeros, compressed, sizeof compressed);
    const uint64_t limit = (uint64_t)40 * 1024;
    ck_assert_uint_lt(length, limit);
    expect_failure("permessage-deflate", (const uint8_t[]){0xc2}, compressed, length, 1, 1009,
                   limit);
}
END_TEST

START_TEST(test_a_malformed_extension_list_is_refused_with_400)
{
    static struct ws_request request;
    char text[1024];
    snprintf(text, sizeof text, "%.*sSec-WebSocket-Extensions: permessage-deflate;\r\n\r\n",
             (int)(sizeof GOOD_REQUEST - 3), GOOD_REQUEST);
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, text, &refusal), 0);
    int ends[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    struct ws_settings settings = NO_LIMITS;
    settings.permessage_deflate = true;
    struct ws_transport transport = plain_transport(ends[0]);
    ck_assert_ptr_null(ws_accept(&transport, &request, &settings, &refusal));
    ck_assert_int_eq(refusal.status, 400);
    /* Without --permessage-deflate the header is not even read. */
    settings.permessage_deflate = false;
    struct ws *ws = ws_accept(&transport, &request, &settings, &refusal);
    ck_assert_ptr_nonnull(ws);
    char response[512];
    ssize_t got = recv(ends[1], response, sizeof response - 1, 0);
    ck_assert_int_gt(got, 0);
    response[got] = '\0';
    ck_assert_msg(strstr(response, "Extensions") == NULL, "expected no extension, got: %s",
                  response);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

START_TEST(test_the_response_names_what_was_agreed)
{
    struct ws_settings settings = NO_LIMITS;
    int ends[2];
    char response[512];
    struct ws *ws = accept_offer(ends,
                                 "permessage-deflate; client_max_window_bits; "
                                 "server_max_window_bits=10; client_no_context_takeover",
                                 &settings, response, sizeof response);
    ck_assert_msg(strstr(response, "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                                   "client_no_context_takeover; server_max_window_bits=10; "
                                   "client_max_window_bits=12\r\n") != NULL,
                  "got: %s", response);
    ws_free(ws);
    close(ends[0]);
    close(ends[1]);
}
END_TEST

/* ==== The suite ========================================================= */

#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

/* ==== Answering a plain HTTP request ===================================== */

/* Reads everything the other end of a socketpair sent, until it closes. */
static size_t read_all(int fd, char *out, size_t size)
{
    size_t length = 0;
    ssize_t got;
    while (length < size - 1 && (got = recv(fd, out + length, size - 1 - length, 0)) > 0)
        length += (size_t)got;
    out[length] = '\0';
    return length;
}

/* The body of an HTTP response: what follows the blank line. */
static const char *body_of(const char *response)
{
    const char *blank = strstr(response, "\r\n\r\n");
    return blank != NULL ? blank + 4 : "";
}

START_TEST(test_refusal_with_a_long_reason_is_sent_whole)
{
    static char reason[1100];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    int ends[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    shutdown(ends[1], SHUT_WR); /* so that the server's linger ends at once */
    struct ws_refusal refusal = {400, reason, 0};
    struct ws_transport transport = plain_transport(ends[0]);
    ck_assert_int_eq(ws_refuse(&transport, NULL, &refusal), 0);
    close(ends[0]);
    static char response[4096];
    read_all(ends[1], response, sizeof response);
    ck_assert_msg(strstr(response, "\r\nContent-Length: 1100\r\n") != NULL,
                  "expected Content-Length: 1100 (a 1,099-byte reason and a newline), got: %.200s",
                  response);
    ck_assert_uint_eq(strlen(body_of(response)), 1100);
    ck_assert_int_eq(strncmp(body_of(response), reason, 1099), 0);
    close(ends[1]);
}
END_TEST

START_TEST(test_page_with_a_long_content_type_is_sent_whole)
{
    static char type[400];
    memset(type, 't', sizeof type - 1);
    type[sizeof type - 1] = '\0';
    static struct ws_request request;
    struct ws_refusal refusal;
    ck_assert_int_eq(parse(&request, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &refusal), 0);
    int ends[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ends), 0);
    shutdown(ends[1], SHUT_WR);
    struct ws_transport transport = plain_transport(ends[0]);
    ck_assert_int_eq(ws_send_page(&transport, &request, type, "<p>hi</p>", 9), 0);
    close(ends[0]);
    static char response[4096];
    read_all(ends[1], response, sizeof response);
    char expected[512];
    snprintf(expected, sizeof expected, "\r\nContent-Type: %s\r\n", type);
    ck_assert_msg(strstr(response, expected) != NULL, "the content type was cut: %.600s", response);
    ck_assert_str_eq(body_of(response), "<p>hi</p>");
    close(ends[1]);
}
END_TEST

static Suite *ws_suite(void)
{
    Suite *suite = suite_create("ws");

    TCase *accept_key = tcase_create("accept key");
    tcase_add_test(accept_key, test_accept_key_matches_rfc_example);
    tcase_add_test(accept_key, test_accept_key_differs_for_another_key);
    suite_add_tcase(suite, accept_key);

    TCase *parsing = tcase_create("request parsing");
    tcase_add_test(parsing, test_parse_reads_request_line_and_headers);
    tcase_add_test(parsing, test_the_header_block_ends_only_at_the_blank_line);
    tcase_add_test(parsing, test_parse_keeps_bytes_after_the_headers);
    tcase_add_test(parsing, test_parse_accepts_bare_line_feeds_and_trims_values);
    tcase_add_loop_test(parsing, test_parse_refuses_malformed_requests, 0, COUNT(BAD_REQUESTS));
    tcase_add_test(parsing, test_parse_leaves_no_field_unset_when_it_fails);
    tcase_add_test(parsing, test_parse_refuses_a_nul_byte);
    tcase_add_test(parsing, test_parse_refuses_too_many_headers_with_431);
    tcase_add_loop_test(parsing, test_parse_refuses_control_characters_with_400, 0,
                        COUNT(CONTROL_CHARACTER_REQUESTS));
    tcase_add_test(parsing, test_parse_accepts_tabs_and_bytes_above_ascii_in_values);
    suite_add_tcase(suite, parsing);

    TCase *handshake = tcase_create("handshake checks");
    tcase_add_test(handshake, test_handshake_accepts_the_rfc_example);
    tcase_add_test(handshake, test_handshake_header_values_are_case_insensitive_lists);
    tcase_add_test(handshake, test_handshake_accepts_any_path_and_later_http);
    tcase_add_loop_test(handshake, test_handshake_refuses_each_broken_rule, 0,
                        COUNT(BAD_HANDSHAKES));
    suite_add_tcase(suite, handshake);

    TCase *frames = tcase_create("frame headers");
    tcase_add_test(frames, test_decode_small_unmasked_frame);
    tcase_add_test(frames, test_decode_masked_frame_reads_the_key);
    tcase_add_test(frames, test_decode_16_bit_and_64_bit_lengths);
    tcase_add_test(frames, test_decode_reads_fin_rsv_and_opcode_bits);
    tcase_add_test(frames, test_decode_asks_for_more_bytes_until_the_header_is_whole);
    tcase_add_test(frames, test_decode_refuses_length_with_top_bit_set);
    tcase_add_loop_test(frames, test_encode_uses_the_shortest_length_form_and_decodes_back, 0,
                        COUNT(LENGTH_FORMS));
    tcase_add_test(frames, test_encode_writes_the_rfc_bytes);
    suite_add_tcase(suite, frames);

    TCase *masking = tcase_create("masking");
    tcase_add_test(masking, test_mask_matches_rfc_example);
    tcase_add_test(masking, test_mask_in_pieces_equals_mask_at_once);
    suite_add_tcase(suite, masking);

    TCase *utf8 = tcase_create("UTF-8");
    tcase_add_loop_test(utf8, test_utf8_accepts_valid_text, 0, COUNT(VALID_UTF8));
    tcase_add_loop_test(utf8, test_utf8_refuses_invalid_text, 0, COUNT(INVALID_UTF8));
    tcase_add_test(utf8, test_utf8_accepts_characters_split_across_pieces);
    tcase_add_test(utf8, test_utf8_knows_when_a_piece_ends_inside_a_character);
    tcase_add_test(utf8, test_utf8_fails_at_the_first_impossible_byte);
    suite_add_tcase(suite, utf8);

    TCase *close_codes = tcase_create("close codes");
    tcase_add_test(close_codes, test_close_codes_that_may_be_sent);
    tcase_add_test(close_codes, test_close_codes_that_may_not_be_sent);
    suite_add_tcase(suite, close_codes);

    TCase *describe = tcase_create("describing frames");
    tcase_add_test(describe, test_describe_frame_draws_the_rfc_hello);
    tcase_add_test(describe, test_describe_frame_names_the_length_form_and_shows_close_codes);
    suite_add_tcase(suite, describe);

    TCase *connection = tcase_create("connection");
    tcase_add_test(connection, test_a_failed_connection_stays_failed);
    tcase_add_test(connection, test_message_over_the_limit_fails_with_1009_before_its_payload);
    tcase_add_test(connection, test_message_exactly_at_the_limit_is_delivered);
    tcase_add_test(connection, test_stop_delivers_messages_already_queued_then_closes_with_1001);
    tcase_add_test(connection, test_request_that_never_ends_gets_408);
    tcase_add_test(connection, test_request_during_shutdown_gets_503);
    suite_add_tcase(suite, connection);

    TCase *deflate = tcase_create("permessage-deflate");
    tcase_add_loop_test(deflate, test_negotiation_takes_the_first_acceptable_offer, 0,
                        COUNT(OFFERS));
    tcase_add_test(deflate, test_negotiation_sets_the_windows_we_compress_and_inflate_with);
    tcase_add_test(deflate, test_the_response_names_what_was_agreed);
    tcase_add_test(deflate, test_a_malformed_extension_list_is_refused_with_400);
    tcase_add_loop_test(deflate, test_receives_the_rfc_7692_hello_examples, 0, 2 * COUNT(HELLOS));
    tcase_add_test(deflate, test_a_message_after_a_final_block_still_refers_back);
    tcase_add_test(deflate, test_a_long_compressed_message_arrives_whole_a_byte_at_a_time);
    tcase_add_test(deflate, test_sends_hello_twice_referring_back_with_context_takeover);
    tcase_add_test(deflate, test_sends_hello_twice_alike_with_server_no_context_takeover);
    tcase_add_test(deflate, test_sends_empty_messages_as_one_zero_byte);
    tcase_add_test(deflate, test_a_large_message_sent_in_chunks_inflates_back_whole);
    tcase_add_test(deflate, test_rsv1_where_it_may_not_be_fails_with_1002);
    tcase_add_test(deflate, test_corrupt_compressed_data_fails_with_1007);
    tcase_add_test(deflate, test_a_message_that_inflates_past_the_limit_fails_with_1009);
    suite_add_tcase(suite, deflate);

    TCase *answers = tcase_create("answering plain HTTP");
    tcase_add_test(answers, test_refusal_with_a_long_reason_is_sent_whole);
    tcase_add_test(answers, test_page_with_a_long_content_type_is_sent_whole);
    suite_add_tcase(suite, answers);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(ws_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
