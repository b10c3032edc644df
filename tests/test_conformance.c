/* test_conformance.c -- protocol conformance in the spirit of the
 * Autobahn|Testsuite "fuzzingclient": sections 1 (framing), 2 (ping/pong),
 * 3 (reserved bits), 4 (opcodes), 5 (fragmentation), 6 (UTF-8), 7 (close
 * handling), 9 (large messages) and 10 (auto-fragmentation). Each case is
 * written from the public case description and the RFC section it tests,
 * and is named after the Autobahn case number. A few rules that no Autobahn
 * case breaks have cases of their own in the section they belong to, named
 * after the RFC section instead (rfc_5_1_...).
 *
 * "Strict" throughout: where Autobahn would also accept a dropped TCP
 * connection without a close frame, we require the close frame with the
 * right code, because our server always sends one (RFC 6455 §7.1.7). Where a
 * case leaves room for a streaming server, the comment says what we expect.
 */
#define _POSIX_C_SOURCE 200809L

#include "../ws.h"
#include "client.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))
#define TEXT         WS_OPCODE_TEXT
#define BINARY       WS_OPCODE_BINARY
#define CONTINUATION WS_OPCODE_CONTINUATION
#define PING         WS_OPCODE_PING
#define PONG         WS_OPCODE_PONG
#define CLOSE        WS_OPCODE_CLOSE
#define KiB          ((size_t)1024)
#define MiB          (1024 * KiB)

/* ==== Helpers =========================================================== */

static void send_frame(struct client *c, bool fin, uint8_t opcode, const void *payload,
                       size_t length)
{
    ck_assert_int_eq(client_send_frame(c, fin, opcode, payload, length), 0);
}

/* The same frame, sent a few bytes per write (Autobahn's "chopped" cases). */
static void send_chopped(struct client *c, bool fin, uint8_t opcode, const void *payload,
                         size_t length, size_t chop)
{
    ck_assert_int_eq(client_send_frame_ex(c, fin, 0, opcode, true, payload, length, chop), 0);
}

static void send_with_rsv(struct client *c, uint8_t rsv, uint8_t opcode, const void *payload,
                          size_t length)
{
    ck_assert_int_eq(client_send_frame_ex(c, true, rsv, opcode, true, payload, length, 0), 0);
}

/* Sends a message as frames of at most fragment_size bytes. */
static void send_fragmented(struct client *c, uint8_t opcode, const uint8_t *payload, size_t length,
                            size_t fragment_size)
{
    size_t sent = 0;
    do {
        size_t piece = length - sent < fragment_size ? length - sent : fragment_size;
        send_frame(c, sent + piece == length, sent == 0 ? opcode : CONTINUATION, payload + sent,
                   piece);
        sent += piece;
    } while (sent < length);
}

static void pause_milliseconds(long milliseconds)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = milliseconds * 1000000};
    nanosleep(&pause, NULL);
}

static uint8_t *make_payload(size_t length, bool text)
{
    uint8_t *payload = malloc(length + 1);
    ck_assert_ptr_nonnull(payload);
    fill_payload(payload, length, text, (unsigned)length);
    return payload;
}

/* ==== Section 1: framing ================================================ */

static const struct {
    size_t length;
    size_t chop;
} FRAMING[] = {
    {0, 0}, {125, 0}, {126, 0}, {127, 0}, {128, 0}, {65535, 0}, {65536, 0}, {65536, 997},
};

/* 1.1.1-1.1.8 (text), 1.2.1-1.2.8 (binary): a message of each length is
 * echoed; x.x.8 sends the frame in chops of 997 bytes. */
START_TEST(case_1_x_message_of_each_length_is_echoed)
{
    bool text = _i < COUNT(FRAMING);
    size_t length = FRAMING[_i % COUNT(FRAMING)].length;
    uint8_t *payload = make_payload(length, text);
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, true, text ? TEXT : BINARY, payload, length,
                 FRAMING[_i % COUNT(FRAMING)].chop);
    expect_message(&c, text ? TEXT : BINARY, payload, length);
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* Beyond Autobahn. RFC 6455 §5.1: a server must fail the connection when a
 * client's frame is not masked. */
START_TEST(rfc_5_1_unmasked_frame_fails)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_frame_ex(&c, true, 0, TEXT, false, "hi", 2, 0), 0);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* Beyond Autobahn. RFC 6455 §5.2: in the 64-bit length form the most
 * significant bit must be 0. The header alone fails the connection; no
 * payload follows it. */
START_TEST(rfc_5_2_length_with_top_bit_set_fails)
{
    /* Binary, FIN, masked, length 2^63, mask key 1 2 3 4. */
    const uint8_t header[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_raw(&c, header, sizeof header, 0), 0);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* ==== Section 2: ping and pong ========================================== */

START_TEST(case_2_1_ping_without_payload)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PING, "", 0);
    expect_pong(&c, "", 0);
    close_cleanly(&c);
}
END_TEST

START_TEST(case_2_2_and_2_3_ping_with_text_and_binary_payload)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PING, "Hello, world!", 13);
    expect_pong(&c, "Hello, world!", 13);
    send_frame(&c, true, PING, "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8);
    expect_pong(&c, "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 8);
    close_cleanly(&c);
}
END_TEST

START_TEST(case_2_4_ping_with_125_byte_payload)
{
    uint8_t payload[125];
    memset(payload, 0xFE, sizeof payload);
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PING, payload, sizeof payload);
    expect_pong(&c, payload, sizeof payload);
    close_cleanly(&c);
}
END_TEST

START_TEST(case_2_5_ping_with_126_byte_payload_fails)
{
    uint8_t payload[126];
    memset(payload, 0xFE, sizeof payload);
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PING, payload, sizeof payload);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

START_TEST(case_2_6_ping_with_125_bytes_sent_one_byte_at_a_time)
{
    uint8_t payload[125];
    memset(payload, 0xFE, sizeof payload);
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, true, PING, payload, sizeof payload, 1);
    expect_pong(&c, payload, sizeof payload);
    close_cleanly(&c);
}
END_TEST

START_TEST(case_2_7_and_2_8_unsolicited_pongs_are_ignored)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PONG, "", 0);
    send_frame(&c, true, PONG, "unsolicited pong payload", 24);
    ck_assert(client_nothing_within(&c, 100));
    close_cleanly(&c);
}
END_TEST

START_TEST(case_2_9_unsolicited_pong_then_ping)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, PONG, "unsolicited pong payload", 24);
    send_frame(&c, true, PING, "ping payload", 12);
    expect_pong(&c, "ping payload", 12);
    close_cleanly(&c);
}
END_TEST

/* 2.10 and 2.11: ten pings in a row (2.11 sends them in 1-byte chops) get
 * ten pongs, in order. */
START_TEST(case_2_10_and_2_11_ten_pings_get_ten_pongs)
{
    struct client c;
    open_or_fail(&c);
    char payload[32];
    for (int i = 0; i < 10; i++) {
        int length = snprintf(payload, sizeof payload, "payload-%d", i);
        send_chopped(&c, true, PING, payload, (size_t)length, _i == 0 ? 0 : 1);
    }
    for (int i = 0; i < 10; i++) {
        int length = snprintf(payload, sizeof payload, "payload-%d", i);
        expect_pong(&c, payload, (size_t)length);
    }
    close_cleanly(&c);
}
END_TEST

/* ==== Section 3: reserved bits ========================================== */

START_TEST(case_3_1_text_with_rsv_1_fails)
{
    struct client c;
    open_or_fail(&c);
    send_with_rsv(&c, 1, TEXT, "Hello, world!", 13);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 3.2-3.4: a good text message, then one with RSV 2, 3 or 4, then a ping:
 * the first is echoed, the second fails the connection, the ping is never
 * answered. 3.4 sends everything in 1-byte chops. */
START_TEST(case_3_2_to_3_4_echo_then_reserved_bits_fail)
{
    const uint8_t rsv[] = {2, 3, 4};
    size_t chop = _i == 2 ? 1 : 0;
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, true, TEXT, "Hello, world!", 13, chop);
    ck_assert_int_eq(client_send_frame_ex(&c, true, rsv[_i], TEXT, true, "Hello", 5, chop), 0);
    send_chopped(&c, true, PING, "", 0, chop);
    expect_message(&c, TEXT, "Hello, world!", 13);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 3.5-3.7: binary with RSV 5, ping with RSV 6, close with RSV 7. */
START_TEST(case_3_5_to_3_7_reserved_bits_on_binary_ping_close_fail)
{
    const uint8_t rsv[] = {5, 6, 7};
    const uint8_t opcode[] = {BINARY, PING, CLOSE};
    struct client c;
    open_or_fail(&c);
    send_with_rsv(&c, rsv[_i], opcode[_i], "\x03\xe8", 2);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* ==== Section 4: opcodes ================================================ */

/* 4.1.1-4.1.5 use the reserved data opcodes 3-7, 4.2.1-4.2.5 the reserved
 * control opcodes 11-15. x.x.1 sends one alone, x.x.2 with a payload, and
 * x.x.3-x.x.5 after a good text message and before a ping: the text is
 * echoed, the reserved opcode fails the connection, the ping is not
 * answered. */
START_TEST(case_4_x_reserved_opcodes_fail)
{
    uint8_t opcode = (uint8_t)(_i < 5 ? 3 + _i : 11 + (_i - 5));
    int step = _i % 5;
    struct client c;
    open_or_fail(&c);
    size_t length = step == 0 || step == 2 ? 0 : 8;
    if (step < 2) {
        send_frame(&c, true, opcode, "reserved", length);
    } else {
        send_frame(&c, true, TEXT, "Hello, world!", 13);
        send_frame(&c, true, opcode, "reserved", length);
        send_frame(&c, true, PING, "", 0);
        expect_message(&c, TEXT, "Hello, world!", 13);
    }
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* ==== Section 5: fragmentation ========================================== */

/* 5.1 and 5.2: a ping or a pong in two fragments fails (RFC 6455 §5.5). */
START_TEST(case_5_1_and_5_2_fragmented_control_frame_fails)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, false, _i == 0 ? PING : PONG, "fragment1", 9);
    send_frame(&c, true, CONTINUATION, "fragment2", 9);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 5.3-5.5: a text message in two fragments is echoed whole; 5.4 sends it in
 * 1-byte chops, 5.5 frame by frame with a pause between. */
START_TEST(case_5_3_to_5_5_text_in_two_fragments_is_echoed)
{
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, false, TEXT, "fragment1", 9, _i == 1 ? 1 : 0);
    if (_i == 2)
        pause_milliseconds(50);
    send_chopped(&c, true, CONTINUATION, "fragment2", 9, _i == 1 ? 1 : 0);
    expect_message(&c, TEXT, "fragment1fragment2", 18);
    close_cleanly(&c);
}
END_TEST

/* 5.6-5.8: the same with a ping between the fragments. Our echo streams: the
 * first fragment may come back before the pong, so the reads accept either
 * order, and require one pong and the whole message. */
START_TEST(case_5_6_to_5_8_ping_between_fragments)
{
    size_t chop = _i == 1 ? 1 : 0;
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, false, TEXT, "fragment1", 9, chop);
    send_chopped(&c, true, PING, "ping payload", 12, chop);
    if (_i == 2)
        pause_milliseconds(50);
    send_chopped(&c, true, CONTINUATION, "fragment2", 9, chop);
    char message[32];
    char pongs[2][WS_MAX_CONTROL_PAYLOAD + 1];
    ck_assert_int_eq(client_read_message_and_pongs(&c, message, sizeof message, pongs, 2), 1);
    ck_assert_str_eq(pongs[0], "ping payload");
    ck_assert_str_eq(message, "fragment1fragment2");
    close_cleanly(&c);
}
END_TEST

/* 5.9-5.14: a message that starts with a continuation frame (FIN set in
 * 5.9-5.11, clear in 5.12-5.14), then a good text message: the connection
 * fails at the first frame. 5.10 and 5.13 send in 1-byte chops. */
START_TEST(case_5_9_to_5_14_continuation_without_start_fails)
{
    bool fin = _i < 3;
    size_t chop = _i % 3 == 1 ? 1 : 0;
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, fin, CONTINUATION, "non-continuation payload", 24, chop);
    send_chopped(&c, true, TEXT, "Hello, world!", 13, chop);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 5.15: a good fragmented message, then continuations with nothing to
 * continue: the first message is echoed, then the connection fails. */
START_TEST(case_5_15_continuations_after_a_finished_message_fail)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, false, TEXT, "fragment1", 9);
    send_frame(&c, true, CONTINUATION, "fragment2", 9);
    send_frame(&c, false, CONTINUATION, "fragment3", 9);
    send_frame(&c, true, CONTINUATION, "fragment4", 9);
    expect_message(&c, TEXT, "fragment1fragment2", 18);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 5.16 and 5.17: continuation frames first (FIN clear then set, or set
 * twice), then a text message: fails at the first frame. */
START_TEST(case_5_16_and_5_17_repeated_continuations_fail)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, _i == 1, CONTINUATION, "fragment1", 9);
    send_frame(&c, true, CONTINUATION, "fragment2", 9);
    send_frame(&c, true, TEXT, "fragment3", 9);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 5.18: a text frame without FIN, then another text frame: a new message
 * inside an unfinished one. The first fragment has been echoed already. */
START_TEST(case_5_18_new_message_inside_a_fragmented_one_fails)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, false, TEXT, "fragment1", 9);
    send_frame(&c, true, TEXT, "fragment2", 9);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&c, &frame), 0);
    ck_assert(frame.opcode == TEXT && !frame.fin);
    frame_free(&frame);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 5.19 and 5.20: a text message in 5 fragments, with a ping after the 2nd
 * and the 4th, and pauses (5.20 sends frame by frame): two pongs and the
 * whole message. */
START_TEST(case_5_19_and_5_20_five_fragments_with_two_pings)
{
    struct client c;
    open_or_fail(&c);
    char expected[64] = "";
    for (int i = 1; i <= 5; i++) {
        char fragment[16];
        int length = snprintf(fragment, sizeof fragment, "fragment%d", i);
        strcat(expected, fragment);
        send_frame(&c, i == 5, i == 1 ? TEXT : CONTINUATION, fragment, (size_t)length);
        if (i == 2 || i == 4) {
            send_frame(&c, true, PING, i == 2 ? "pongme 1!" : "pongme 2!", 9);
            pause_milliseconds(_i == 0 ? 20 : 100);
        }
    }
    char message[64];
    char pongs[3][WS_MAX_CONTROL_PAYLOAD + 1];
    ck_assert_int_eq(client_read_message_and_pongs(&c, message, sizeof message, pongs, 3), 2);
    ck_assert_str_eq(pongs[0], "pongme 1!");
    ck_assert_str_eq(pongs[1], "pongme 2!");
    ck_assert_str_eq(message, expected);
    close_cleanly(&c);
}
END_TEST

/* ==== Section 6: UTF-8 ================================================== */

/* 6.1.1-6.1.3: empty text messages, whole and fragmented. */
START_TEST(case_6_1_empty_text_messages)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, TEXT, "", 0);
    expect_message(&c, TEXT, "", 0);
    send_frame(&c, false, TEXT, "", 0);
    send_frame(&c, false, CONTINUATION, "", 0);
    send_frame(&c, true, CONTINUATION, "", 0);
    expect_message(&c, TEXT, "", 0);
    send_frame(&c, false, TEXT, "", 0);
    send_frame(&c, false, CONTINUATION, "middle", 6);
    send_frame(&c, true, CONTINUATION, "", 0);
    expect_message(&c, TEXT, "middle", 6);
    close_cleanly(&c);
}
END_TEST

/* 6.4.1-6.4.4: fail fast. The first part is valid; the second part holds
 * F4 90 80 80, which is above U+10FFFF; the third never matters. The server
 * must fail the connection as soon as the second part arrives, while the
 * third is still being held back: 6.4.1/6.4.2 send the parts as frames,
 * 6.4.3/6.4.4 as chops of one frame. */
START_TEST(case_6_4_invalid_utf8_fails_fast)
{
    const uint8_t part1[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    const uint8_t part2[] = "\xf4\x90\x80\x80";
    const uint8_t part3[] = "\x65\x64\x69\x74\x65\x64";
    struct client c;
    open_or_fail(&c);
    if (_i < 2) {
        send_frame(&c, false, TEXT, part1, sizeof part1 - 1);
        send_frame(&c, false, CONTINUATION, part2, sizeof part2 - 1);
    } else {
        /* One masked frame of 21 bytes, of which we send only the header and
         * the first 15 bytes of payload. The mask key is all zeros, so the
         * payload bytes go out as they are. */
        const uint8_t header[] = {0x81, 0x80 | 21, 0, 0, 0, 0};
        ck_assert_int_eq(client_send_raw(&c, header, sizeof header, 0), 0);
        ck_assert_int_eq(client_send_raw(&c, part1, sizeof part1 - 1, 0), 0);
        pause_milliseconds(20);
        ck_assert_int_eq(client_send_raw(&c, part2, sizeof part2 - 1, _i == 3 ? 1 : 0), 0);
    }
    /* The valid first part may be echoed before the close. */
    struct frame frame;
    do {
        ck_assert_msg(client_read_frame(&c, &frame) == 0, "no fail-fast close (case 6.4.%d)",
                      _i + 1);
        frame_free(&frame);
    } while (frame.opcode != CLOSE);
    (void)part3; /* never sent: the connection is already failed */
    ck_assert(client_wait_for_eof(&c));
    client_close(&c);
}
END_TEST

/* 6.2-6.23: sample texts, most from Markus Kuhn's UTF-8 decoder stress test,
 * which Autobahn uses. Each is sent as one frame, and again as a message of
 * 1-byte fragments, so that every character is also split across frames. */
static const struct {
    const char *case_id;
    const char *bytes;
    bool valid;
} UTF8_SAMPLES[] = {
    {"6.2", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", true},
    {"6.3", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
     false},
    {"6.5.1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
    {"6.5.2", "\xf0\x90\x80\x80", true},
    {"6.5.3", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf0\x90\x80\x80", true},
    /* 6.6: growing prefixes of "κόσμε"; valid only at character ends */
    {"6.6.1", "\xce", false},
    {"6.6.2", "\xce\xba", true},
    {"6.6.3", "\xce\xba\xe1", false},
    {"6.6.4", "\xce\xba\xe1\xbd", false},
    {"6.6.5", "\xce\xba\xe1\xbd\xb9", true},
    {"6.6.6", "\xce\xba\xe1\xbd\xb9\xcf", false},
    {"6.6.7", "\xce\xba\xe1\xbd\xb9\xcf\x83", true},
    {"6.6.8", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce", false},
    {"6.6.9", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc", true},
    {"6.6.10", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce", false},
    {"6.6.11", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
    /* 6.7: first character of each length */
    {"6.7.1", "\x01", true}, /* (U+0000 itself is tested in case_6_7_1_nul below) */
    {"6.7.2", "\xc2\x80", true},
    {"6.7.3", "\xe0\xa0\x80", true},
    {"6.7.4", "\xf0\x90\x80\x80", true},
    /* 6.8: first 5- and 6-byte forms, which UTF-8 no longer has */
    {"6.8.1", "\xf8\x88\x80\x80\x80", false},
    {"6.8.2", "\xfc\x84\x80\x80\x80\x80", false},
    /* 6.9: last character of each length */
    {"6.9.1", "\x7f", true},
    {"6.9.2", "\xdf\xbf", true},
    {"6.9.3", "\xef\xbf\xbf", true},
    {"6.9.4", "\xf4\x8f\xbf\xbf", true},
    /* 6.10: beyond U+10FFFF */
    {"6.10.1", "\xf7\xbf\xbf\xbf", false},
    {"6.10.2", "\xfb\xbf\xbf\xbf\xbf", false},
    {"6.10.3", "\xfd\xbf\xbf\xbf\xbf\xbf", false},
    /* 6.11: other boundaries */
    {"6.11.1", "\xed\x9f\xbf", true},
    {"6.11.2", "\xee\x80\x80", true},
    {"6.11.3", "\xef\xbf\xbd", true},
    {"6.11.4", "\xf4\x8f\xbf\xbf", true},
    {"6.11.5", "\xf4\x90\x80\x80", false},
    /* 6.12: unexpected continuation bytes */
    {"6.12.1", "\x80", false},
    {"6.12.2", "\xbf", false},
    {"6.12.3", "\x80\xbf", false},
    {"6.12.4", "\x80\xbf\x80", false},
    {"6.12.5", "\x80\xbf\x80\xbf", false},
    {"6.12.6", "\x80\xbf\x80\xbf\x80", false},
    {"6.12.7", "\x80\xbf\x80\xbf\x80\xbf", false},
    {"6.12.8", NULL, false}, /* all 64 continuation bytes: built by sample_bytes() */
    /* 6.13: lonely start bytes, each followed by a space: built too */
    {"6.13.1", NULL, false},
    {"6.13.2", NULL, false},
    {"6.13.3", NULL, false},
    {"6.13.4", NULL, false},
    {"6.13.5", NULL, false},
    /* 6.14: sequences with their last byte missing */
    {"6.14.1", "\xc0", false},
    {"6.14.2", "\xe0\x80", false},
    {"6.14.3", "\xf0\x80\x80", false},
    {"6.14.4", "\xf8\x80\x80\x80", false},
    {"6.14.5", "\xfc\x80\x80\x80\x80", false},
    {"6.14.6", "\xdf", false},
    {"6.14.7", "\xef\xbf", false},
    {"6.14.8", "\xf7\xbf\xbf", false},
    {"6.14.9", "\xfb\xbf\xbf\xbf", false},
    {"6.14.10", "\xfd\xbf\xbf\xbf\xbf", false},
    /* 6.15: all of 6.14 concatenated */
    {"6.15.1",
     "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf"
     "\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf",
     false},
    /* 6.16: bytes that never appear */
    {"6.16.1", "\xfe", false},
    {"6.16.2", "\xff", false},
    {"6.16.3", "\xfe\xfe\xff\xff", false},
    /* 6.17: overlong '/' */
    {"6.17.1", "\xc0\xaf", false},
    {"6.17.2", "\xe0\x80\xaf", false},
    {"6.17.3", "\xf0\x80\x80\xaf", false},
    {"6.17.4", "\xf8\x80\x80\x80\xaf", false},
    {"6.17.5", "\xfc\x80\x80\x80\x80\xaf", false},
    /* 6.18: the largest overlong forms */
    {"6.18.1", "\xc1\xbf", false},
    {"6.18.2", "\xe0\x9f\xbf", false},
    {"6.18.3", "\xf0\x8f\xbf\xbf", false},
    {"6.18.4", "\xf8\x87\xbf\xbf\xbf", false},
    {"6.18.5", "\xfc\x83\xbf\xbf\xbf\xbf", false},
    /* 6.19: overlong NUL */
    {"6.19.1", "\xc0\x80", false},
    {"6.19.2", "\xe0\x80\x80", false},
    {"6.19.3", "\xf0\x80\x80\x80", false},
    {"6.19.4", "\xf8\x80\x80\x80\x80", false},
    {"6.19.5", "\xfc\x80\x80\x80\x80\x80", false},
    /* 6.20: single UTF-16 surrogates */
    {"6.20.1", "\xed\xa0\x80", false},
    {"6.20.2", "\xed\xad\xbf", false},
    {"6.20.3", "\xed\xae\x80", false},
    {"6.20.4", "\xed\xaf\xbf", false},
    {"6.20.5", "\xed\xb0\x80", false},
    {"6.20.6", "\xed\xbe\x80", false},
    {"6.20.7", "\xed\xbf\xbf", false},
    /* 6.21: paired UTF-16 surrogates */
    {"6.21.1", "\xed\xa0\x80\xed\xb0\x80", false},
    {"6.21.2", "\xed\xa0\x80\xed\xbf\xbf", false},
    {"6.21.3", "\xed\xad\xbf\xed\xb0\x80", false},
    {"6.21.4", "\xed\xad\xbf\xed\xbf\xbf", false},
    {"6.21.5", "\xed\xae\x80\xed\xb0\x80", false},
    {"6.21.6", "\xed\xae\x80\xed\xbf\xbf", false},
    {"6.21.7", "\xed\xaf\xbf\xed\xb0\x80", false},
    {"6.21.8", "\xed\xaf\xbf\xed\xbf\xbf", false},
    /* 6.22: noncharacters are still valid UTF-8 */
    {"6.22.1", "\xef\xbf\xbe", true},
    {"6.22.2", "\xef\xbf\xbf", true},
    {"6.22.3", "\xf0\x9f\xbf\xbe", true},
    {"6.22.4", "\xf0\x9f\xbf\xbf", true},
    {"6.22.5", "\xf3\xbf\xbf\xbe", true},
    {"6.22.6", "\xf4\x8f\xbf\xbe", true},
    {"6.22.7", "\xef\xb7\x90", true},
    {"6.22.8", "\xef\xb7\xaf", true},
    /* 6.23: miscellaneous */
    {"6.23.1", "\xef\xbf\xbd", true},     /* U+FFFD, the replacement character */
    {"6.23.2", "\xef\xbb\xbf", true},     /* U+FEFF, a byte order mark */
    {"6.23.3", "\xf0\x9f\x98\x80", true}, /* U+1F600, an emoji */
};

/* The samples that are easier to build than to write out. */
static size_t sample_bytes(int index, uint8_t *out)
{
    const char *id = UTF8_SAMPLES[index].case_id;
    if (UTF8_SAMPLES[index].bytes != NULL) {
        size_t length = strlen(UTF8_SAMPLES[index].bytes);
        memcpy(out, UTF8_SAMPLES[index].bytes, length);
        return length;
    }
    size_t length = 0;
    if (strcmp(id, "6.12.8") == 0) {
        for (unsigned byte = 0x80; byte <= 0xBF; byte++)
            out[length++] = (uint8_t)byte;
        return length;
    }
    /* 6.13.1-6.13.5: every start byte of 2-, 3-, 4-, 5- and 6-byte forms. */
    static const uint8_t first[] = {0xC0, 0xE0, 0xF0, 0xF8, 0xFC};
    static const uint8_t last[] = {0xDF, 0xEF, 0xF7, 0xFB, 0xFD};
    int range = id[5] - '1';
    for (unsigned byte = first[range]; byte <= last[range]; byte++) {
        out[length++] = (uint8_t)byte;
        out[length++] = ' ';
    }
    return length;
}

START_TEST(case_6_x_utf8_sample_in_one_frame)
{
    uint8_t bytes[256];
    size_t length = sample_bytes(_i, bytes);
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, TEXT, bytes, length);
    if (UTF8_SAMPLES[_i].valid) {
        expect_message(&c, TEXT, bytes, length);
        close_cleanly(&c);
    } else {
        expect_close(&c, WS_CLOSE_INVALID_PAYLOAD_DATA);
    }
}
END_TEST

START_TEST(case_6_x_utf8_sample_in_one_byte_fragments)
{
    uint8_t bytes[256];
    size_t length = sample_bytes(_i, bytes);
    struct client c;
    open_or_fail(&c);
    send_fragmented(&c, TEXT, bytes, length, 1);
    if (UTF8_SAMPLES[_i].valid) {
        expect_message(&c, TEXT, bytes, length);
        close_cleanly(&c);
        return;
    }
    /* The fragments before the bad byte are echoed as they come (we stream);
     * then the close, with 1007, and nothing of the rest. */
    struct frame frame;
    size_t echoed = 0;
    for (;;) {
        ck_assert_msg(client_read_frame(&c, &frame) == 0, "no close for case %s",
                      UTF8_SAMPLES[_i].case_id);
        if (frame.opcode == CLOSE)
            break;
        echoed += frame.length;
        frame_free(&frame);
    }
    ck_assert_uint_ge(frame.length, 2);
    ck_assert_int_eq(frame.payload[0] << 8 | frame.payload[1], WS_CLOSE_INVALID_PAYLOAD_DATA);
    ck_assert_uint_lt(echoed, length);
    frame_free(&frame);
    ck_assert(client_wait_for_eof(&c));
    client_close(&c);
}
END_TEST

/* 6.7.1: U+0000 is a valid character, and must not cut the message short. */
START_TEST(case_6_7_1_nul_is_valid)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, TEXT, "a\0b", 3);
    expect_message(&c, TEXT, "a\0b", 3);
    close_cleanly(&c);
}
END_TEST

/* ==== Section 7: close handling ========================================= */

START_TEST(case_7_1_1_echo_then_close)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, TEXT, "Hello World!", 12);
    expect_message(&c, TEXT, "Hello World!", 12);
    close_cleanly(&c);
}
END_TEST

/* 7.1.2-7.1.4: after our close, a second close, a ping or a text message is
 * ignored: the only answer is the close. */
START_TEST(case_7_1_2_to_7_1_4_frames_after_close_are_ignored)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, 1000, ""), 0);
    if (_i == 0)
        ck_assert_int_eq(client_send_close(&c, 1000, ""), 0);
    else
        send_frame(&c, true, _i == 1 ? PING : TEXT, "Hello World!", 12);
    expect_close(&c, 1000);
}
END_TEST

/* 7.1.5: a close between the fragments of a message ends it. */
START_TEST(case_7_1_5_close_between_fragments)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, false, TEXT, "fragment1", 9);
    ck_assert_int_eq(client_send_close(&c, 1000, ""), 0);
    send_frame(&c, true, CONTINUATION, "fragment2", 9);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&c, &frame), 0); /* the first fragment, echoed */
    ck_assert(frame.opcode == TEXT && !frame.fin);
    frame_free(&frame);
    expect_close(&c, 1000);
}
END_TEST

/* 7.1.6: a 256 KiB message, then a close, then a ping, sent at once: the
 * message comes back whole, then the close; the ping is not answered. */
START_TEST(case_7_1_6_large_message_then_close)
{
    size_t length = 256 * KiB;
    uint8_t *payload = make_payload(length, true);
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, TEXT, payload, length);
    ck_assert_int_eq(client_send_close(&c, 1000, ""), 0);
    send_frame(&c, true, PING, "Hello World!", 12);
    expect_message(&c, TEXT, payload, length);
    expect_close(&c, 1000);
    free(payload);
}
END_TEST

START_TEST(case_7_3_1_empty_close_gets_empty_close)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, CLOSE_EMPTY, NULL), 0);
    expect_close(&c, CLOSE_EMPTY);
}
END_TEST

START_TEST(case_7_3_2_one_byte_close_fails)
{
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, CLOSE, "\x03", 1);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* 7.3.3-7.3.5: a status alone, with a reason, with the longest reason (123
 * bytes): each is echoed exactly. */
START_TEST(case_7_3_3_to_7_3_5_close_payload_is_echoed)
{
    char reason[124] = "";
    if (_i == 1)
        strcpy(reason, "Hello World!");
    if (_i == 2)
        memset(reason, '*', 123);
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, 1000, reason), 0);
    struct frame frame;
    ck_assert_int_eq(client_read_frame(&c, &frame), 0);
    ck_assert_uint_eq(frame.opcode, CLOSE);
    ck_assert_uint_eq(frame.length, 2 + strlen(reason));
    ck_assert_mem_eq(frame.payload, "\x03\xe8", 2);
    ck_assert_mem_eq(frame.payload + 2, reason, strlen(reason));
    frame_free(&frame);
    ck_assert(client_wait_for_eof(&c));
    client_close(&c);
}
END_TEST

START_TEST(case_7_3_6_close_with_126_byte_payload_fails)
{
    char reason[125];
    memset(reason, '*', 124);
    reason[124] = '\0';
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, 1000, reason), 0);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

START_TEST(case_7_5_1_close_reason_not_utf8_fails)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, 1000,
                                       "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
                                       "\xed\xa0\x80\x65\x64\x69\x74\x65\x64"),
                     0);
    expect_close(&c, WS_CLOSE_INVALID_PAYLOAD_DATA);
}
END_TEST

/* 7.7.1-7.7.13: valid status codes are echoed (1012-1014 have since been
 * registered with IANA and are valid too). */
static const int VALID_CODES[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                  1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};

START_TEST(case_7_7_valid_close_code_is_echoed)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, VALID_CODES[_i], ""), 0);
    expect_close(&c, VALID_CODES[_i]);
}
END_TEST

/* 7.9.1-7.9.9 and 7.13.1-7.13.2: invalid status codes fail the connection. */
static const int INVALID_CODES[] = {0,    999,  1004, 1005, 1006, 1015,
                                    1016, 1100, 2000, 2999, 5000, 65535};

START_TEST(case_7_9_invalid_close_code_fails)
{
    struct client c;
    open_or_fail(&c);
    ck_assert_int_eq(client_send_close(&c, INVALID_CODES[_i], ""), 0);
    expect_close(&c, WS_CLOSE_PROTOCOL_ERROR);
}
END_TEST

/* ==== Section 9: large messages ========================================= */

/* 9.1.1-9.1.6 (text), 9.2.1-9.2.6 (binary): one frame of each size, echoed
 * through the notifier's 4 KiB buffer. */
static const size_t LARGE_SIZES[] = {64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 8 * MiB, 16 * MiB};

START_TEST(case_9_1_and_9_2_large_message_is_echoed)
{
    bool text = _i < COUNT(LARGE_SIZES);
    size_t length = LARGE_SIZES[_i % COUNT(LARGE_SIZES)];
    uint8_t *payload = make_payload(length, text);
    struct client c;
    open_or_fail(&c);
    send_frame(&c, true, text ? TEXT : BINARY, payload, length);
    expect_message(&c, text ? TEXT : BINARY, payload, length);
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* 9.3.1-9.3.9 (text), 9.4.1-9.4.9 (binary): a 4 MiB message in fragments of
 * 64 bytes up to 4 MiB. */
static const size_t FRAGMENT_SIZES[] = {64,       256,       1 * KiB, 4 * KiB, 16 * KiB,
                                        64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB};

START_TEST(case_9_3_and_9_4_fragmented_4_MiB_message_is_echoed)
{
    bool text = _i < COUNT(FRAGMENT_SIZES);
    size_t length = 4 * MiB;
    uint8_t *payload = make_payload(length, text);
    struct client c;
    open_or_fail(&c);
    send_fragmented(&c, text ? TEXT : BINARY, payload, length,
                    FRAGMENT_SIZES[_i % COUNT(FRAGMENT_SIZES)]);
    expect_message(&c, text ? TEXT : BINARY, payload, length);
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* 9.5.1-9.5.6 (text), 9.6.1-9.6.6 (binary): a 1 MiB frame sent in chops of
 * 64 to 2048 bytes. */
static const size_t CHOP_SIZES[] = {64, 128, 256, 512, 1024, 2048};

START_TEST(case_9_5_and_9_6_chopped_1_MiB_message_is_echoed)
{
    bool text = _i < COUNT(CHOP_SIZES);
    size_t length = 1 * MiB;
    uint8_t *payload = make_payload(length, text);
    struct client c;
    open_or_fail(&c);
    send_chopped(&c, true, text ? TEXT : BINARY, payload, length,
                 CHOP_SIZES[_i % COUNT(CHOP_SIZES)]);
    expect_message(&c, text ? TEXT : BINARY, payload, length);
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* 9.7.1-9.7.6 (text), 9.8.1-9.8.6 (binary): 1000 messages of one size, each
 * echoed before the next is sent. */
static const size_t ROUND_TRIP_SIZES[] = {0, 16, 64, 256, 1024, 4096};

START_TEST(case_9_7_and_9_8_thousand_round_trips)
{
    bool text = _i < COUNT(ROUND_TRIP_SIZES);
    size_t length = ROUND_TRIP_SIZES[_i % COUNT(ROUND_TRIP_SIZES)];
    uint8_t *payload = make_payload(length, text);
    struct client c;
    open_or_fail(&c);
    for (int i = 0; i < 1000; i++) {
        send_frame(&c, true, text ? TEXT : BINARY, payload, length);
        expect_message(&c, text ? TEXT : BINARY, payload, length);
    }
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* ==== Section 10: auto-fragmentation ==================================== */

/* 10.1.1: a 64 KiB text message in fragments of 1300 bytes; the echo may be
 * fragmented differently, and must carry the same message. */
START_TEST(case_10_1_1_message_in_1300_byte_fragments)
{
    size_t length = 65536;
    uint8_t *payload = make_payload(length, true);
    struct client c;
    open_or_fail(&c);
    send_fragmented(&c, TEXT, payload, length, 1300);
    expect_message(&c, TEXT, payload, length);
    close_cleanly(&c);
    free(payload);
}
END_TEST

/* ==== The suite ========================================================= */

/* Seconds a case may take: section 9's 16 MiB echoes take the longest. */
#define CASE_TIMEOUT 60

static Suite *conformance_suite(void)
{
    Suite *suite = suite_create("conformance");

    TCase *framing = tcase_with_server(suite, "1 framing", NULL, CASE_TIMEOUT);
    tcase_add_loop_test(framing, case_1_x_message_of_each_length_is_echoed, 0, 2 * COUNT(FRAMING));
    tcase_add_test(framing, rfc_5_1_unmasked_frame_fails);
    tcase_add_test(framing, rfc_5_2_length_with_top_bit_set_fails);

    TCase *pings = tcase_with_server(suite, "2 ping/pong", NULL, CASE_TIMEOUT);
    tcase_add_test(pings, case_2_1_ping_without_payload);
    tcase_add_test(pings, case_2_2_and_2_3_ping_with_text_and_binary_payload);
    tcase_add_test(pings, case_2_4_ping_with_125_byte_payload);
    tcase_add_test(pings, case_2_5_ping_with_126_byte_payload_fails);
    tcase_add_test(pings, case_2_6_ping_with_125_bytes_sent_one_byte_at_a_time);
    tcase_add_test(pings, case_2_7_and_2_8_unsolicited_pongs_are_ignored);
    tcase_add_test(pings, case_2_9_unsolicited_pong_then_ping);
    tcase_add_loop_test(pings, case_2_10_and_2_11_ten_pings_get_ten_pongs, 0, 2);

    TCase *reserved = tcase_with_server(suite, "3 reserved bits", NULL, CASE_TIMEOUT);
    tcase_add_test(reserved, case_3_1_text_with_rsv_1_fails);
    tcase_add_loop_test(reserved, case_3_2_to_3_4_echo_then_reserved_bits_fail, 0, 3);
    tcase_add_loop_test(reserved, case_3_5_to_3_7_reserved_bits_on_binary_ping_close_fail, 0, 3);

    TCase *opcodes = tcase_with_server(suite, "4 opcodes", NULL, CASE_TIMEOUT);
    tcase_add_loop_test(opcodes, case_4_x_reserved_opcodes_fail, 0, 10);

    TCase *fragments = tcase_with_server(suite, "5 fragmentation", NULL, CASE_TIMEOUT);
    tcase_add_loop_test(fragments, case_5_1_and_5_2_fragmented_control_frame_fails, 0, 2);
    tcase_add_loop_test(fragments, case_5_3_to_5_5_text_in_two_fragments_is_echoed, 0, 3);
    tcase_add_loop_test(fragments, case_5_6_to_5_8_ping_between_fragments, 0, 3);
    tcase_add_loop_test(fragments, case_5_9_to_5_14_continuation_without_start_fails, 0, 6);
    tcase_add_test(fragments, case_5_15_continuations_after_a_finished_message_fail);
    tcase_add_loop_test(fragments, case_5_16_and_5_17_repeated_continuations_fail, 0, 2);
    tcase_add_test(fragments, case_5_18_new_message_inside_a_fragmented_one_fails);
    tcase_add_loop_test(fragments, case_5_19_and_5_20_five_fragments_with_two_pings, 0, 2);

    TCase *utf8 = tcase_with_server(suite, "6 UTF-8", NULL, CASE_TIMEOUT);
    tcase_add_test(utf8, case_6_1_empty_text_messages);
    tcase_add_loop_test(utf8, case_6_4_invalid_utf8_fails_fast, 0, 4);
    tcase_add_loop_test(utf8, case_6_x_utf8_sample_in_one_frame, 0, COUNT(UTF8_SAMPLES));
    tcase_add_loop_test(utf8, case_6_x_utf8_sample_in_one_byte_fragments, 0, COUNT(UTF8_SAMPLES));
    tcase_add_test(utf8, case_6_7_1_nul_is_valid);

    TCase *closing = tcase_with_server(suite, "7 close handling", NULL, CASE_TIMEOUT);
    tcase_add_test(closing, case_7_1_1_echo_then_close);
    tcase_add_loop_test(closing, case_7_1_2_to_7_1_4_frames_after_close_are_ignored, 0, 3);
    tcase_add_test(closing, case_7_1_5_close_between_fragments);
    tcase_add_test(closing, case_7_1_6_large_message_then_close);
    tcase_add_test(closing, case_7_3_1_empty_close_gets_empty_close);
    tcase_add_test(closing, case_7_3_2_one_byte_close_fails);
    tcase_add_loop_test(closing, case_7_3_3_to_7_3_5_close_payload_is_echoed, 0, 3);
    tcase_add_test(closing, case_7_3_6_close_with_126_byte_payload_fails);
    tcase_add_test(closing, case_7_5_1_close_reason_not_utf8_fails);
    tcase_add_loop_test(closing, case_7_7_valid_close_code_is_echoed, 0, COUNT(VALID_CODES));
    tcase_add_loop_test(closing, case_7_9_invalid_close_code_fails, 0, COUNT(INVALID_CODES));

    TCase *large = tcase_with_server(suite, "9 large messages", NULL, CASE_TIMEOUT);
    tcase_add_loop_test(large, case_9_1_and_9_2_large_message_is_echoed, 0, 2 * COUNT(LARGE_SIZES));
    tcase_add_loop_test(large, case_9_3_and_9_4_fragmented_4_MiB_message_is_echoed, 0,
                        2 * COUNT(FRAGMENT_SIZES));
    tcase_add_loop_test(large, case_9_5_and_9_6_chopped_1_MiB_message_is_echoed, 0,
                        2 * COUNT(CHOP_SIZES));
    tcase_add_loop_test(large, case_9_7_and_9_8_thousand_round_trips, 0,
                        2 * COUNT(ROUND_TRIP_SIZES));

    TCase *autofragment = tcase_with_server(suite, "10 auto-fragmentation", NULL, CASE_TIMEOUT);
    tcase_add_test(autofragment, case_10_1_1_message_in_1300_byte_fragments);
    return suite;
}

int main(void)
{
    return run_suite(conformance_suite());
}
