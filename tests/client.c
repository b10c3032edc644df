/* client.c -- the server under test, and a WebSocket client for the tests.
 * See client.h. Frame headers and masking reuse ws.c's helpers, which the
 * unit tests check byte for byte against the RFC's examples. */
#define _POSIX_C_SOURCE 200809L

#include "client.h"

#include "../ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_milliseconds(long milliseconds)
{
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* ==== The server under test ============================================= */

/* Reads the server's first line, "Listening on ws://127.0.0.1:PORT ...". */
static int read_listening_port(int fd)
{
    char line[256] = "";
    size_t length = 0;
    while (length < sizeof line - 1 && strchr(line, '\n') == NULL) {
        struct pollfd readable = {.fd = fd, .events = POLLIN};
        if (poll(&readable, 1, 5000) <= 0)
            return -1;
        ssize_t n = read(fd, line + length, sizeof line - 1 - length);
        if (n <= 0)
            return -1;
        length += (size_t)n;
        line[length] = '\0';
    }
    const char *colon = strrchr(line, ':');
    return colon != NULL ? atoi(colon + 1) : -1;
}

/* In the child: becomes the server, with arguments after its own. */
static void exec_server(const char *path, const char *const *arguments, const char *log_path)
{
    const char *argv[32] = {path, "--host", "127.0.0.1", "--port", "0"};
    size_t argc = 5;
    for (size_t i = 0; arguments != NULL && arguments[i] != NULL && argc < 31; i++)
        argv[argc++] = arguments[i];
    argv[argc] = NULL;
    if (log_path != NULL) {
        int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (log >= 0)
            dup2(log, STDERR_FILENO);
    }
    execv(path, (char *const *)argv);
    _exit(127);
}

pid_t server_start_with(int *port, const char *const *arguments, const char *log_path)
{
    const char *path = getenv("SERVER");
    if (path == NULL)
        path = "./server";
    int out[2];
    if (pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        exec_server(path, arguments, log_path);
    }
    close(out[1]);
    *port = pid > 0 ? read_listening_port(out[0]) : -1;
    close(out[0]);
    if (pid > 0 && *port <= 0) {
        server_stop(pid);
        return -1;
    }
    return pid;
}

pid_t server_start(int *port)
{
    return server_start_with(port, NULL, "/dev/null"); /* its log is not the test's */
}

int server_wait(pid_t pid, int milliseconds)
{
    int status = 0;
    for (int waited = 0; waited < milliseconds; waited += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        sleep_milliseconds(20);
    }
    return -1;
}

int server_stop(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    /* Under valgrind a clean exit takes a while: it checks for leaks. */
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        sleep_milliseconds(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

/* ==== Connecting ======================================================== */

int client_connect(struct client *client, int port)
{
    memset(client, 0, sizeof *client);
    client->capacity = 65536;
    client->inbox = malloc(client->capacity);
    client->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (client->inbox == NULL || client->fd < 0) {
        client_close(client);
        return -1;
    }
    struct timeval timeout = {.tv_sec = CLIENT_TIMEOUT_SECONDS};
    setsockopt(client->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(client->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    int on = 1;
    setsockopt(client->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(client->fd, (struct sockaddr *)&address, sizeof address) != 0) {
        client_close(client);
        return -1;
    }
    return 0;
}

void client_close(struct client *client)
{
    if (client->fd >= 0)
        close(client->fd);
    client->fd = -1;
    free(client->inbox);
    client->inbox = NULL;
    client->capacity = client->in_start = client->in_end = 0;
}

/* Reads more bytes into the inbox, growing it when it is full. Returns -1
 * on timeout, error or end of stream. */
static int client_fill(struct client *client)
{
    if (client->in_start == client->in_end)
        client->in_start = client->in_end = 0;
    if (client->in_end == client->capacity) {
        size_t capacity = client->capacity == 0 ? 65536 : 2 * client->capacity;
        uint8_t *grown = realloc(client->inbox, capacity);
        if (grown == NULL)
            return -1;
        client->inbox = grown;
        client->capacity = capacity;
    }
    ssize_t n;
    do {
        n = recv(client->fd, client->inbox + client->in_end, client->capacity - client->in_end, 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        client->at_eof = true;
    if (n <= 0)
        return -1;
    client->in_end += (size_t)n;
    return 0;
}

int client_handshake(struct client *client, int port, const char *extra_headers, char *response,
                     size_t size)
{
    if (client_connect(client, port) != 0)
        return -1;
    char request[1024];
    int length = snprintf(request, sizeof request,
                          "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n%s\r\n",
                          port, CLIENT_KEY, extra_headers != NULL ? extra_headers : "");
    /* A server that refuses at once (503) may answer and close before the
     * whole request is sent: a failed send is not the end, the answer is. */
    client_send_raw(client, request, (size_t)length, 0);
    /* Read until the blank line; frames may follow it in the same read. The
     * answer may be in the inbox already: the send reads while it waits. */
    size_t header_length = 0;
    for (;;) {
        for (size_t i = 0; i + 4 <= client->in_end && header_length == 0; i++) {
            if (memcmp(client->inbox + i, "\r\n\r\n", 4) == 0)
                header_length = i + 4;
        }
        if (header_length > 0)
            break;
        if (client_fill(client) != 0)
            return -1;
    }
    size_t copied = header_length < size ? header_length : size - 1;
    memcpy(response, client->inbox, copied);
    response[copied] = '\0';
    client->in_start = header_length;
    return 0;
}

int client_open(struct client *client, int port)
{
    char response[1024];
    if (client_handshake(client, port, NULL, response, sizeof response) != 0)
        return -1;
    char accept[29];
    if (ws_accept_key(CLIENT_KEY, accept) != 0)
        return -1;
    if (strncmp(response, "HTTP/1.1 101 ", 13) != 0 || strstr(response, accept) == NULL)
        return -1;
    return 0;
}

/* ==== Sending =========================================================== */

int client_send_raw(struct client *client, const void *bytes, size_t length, size_t chop)
{
    const uint8_t *next = bytes;
    while (length > 0) {
        short events = client->at_eof ? POLLOUT : POLLOUT | POLLIN;
        struct pollfd ready = {.fd = client->fd, .events = events};
        if (poll(&ready, 1, CLIENT_TIMEOUT_SECONDS * 1000) <= 0)
            return -1;
        if ((ready.revents & POLLIN) && client_fill(client) != 0 && !client->at_eof)
            return -1;
        if (!(ready.revents & POLLOUT))
            continue;
        size_t piece = chop > 0 && chop < length ? chop : length;
        ssize_t n = send(client->fd, next, piece, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return -1;
        next += n;
        length -= (size_t)n;
    }
    return 0;
}

int client_send_frame_ex(struct client *client, bool fin, uint8_t rsv, uint8_t opcode, bool masked,
                         const void *payload, size_t length, size_t chop)
{
    struct ws_frame_header header = {.fin = fin,
                                     .rsv = rsv,
                                     .opcode = (enum ws_opcode)opcode,
                                     .masked = masked,
                                     .payload_length = length};
    for (int i = 0; i < 4; i++)
        header.mask_key[i] = (uint8_t)rand();
    uint8_t *bytes = malloc(WS_MAX_FRAME_HEADER + length);
    if (bytes == NULL)
        return -1;
    size_t header_size = ws_encode_frame_header(&header, bytes);
    if (length > 0)
        memcpy(bytes + header_size, payload, length);
    if (masked)
        ws_mask(bytes + header_size, length, header.mask_key, 0);
    int result = client_send_raw(client, bytes, header_size + length, chop);
    free(bytes);
    return result;
}

int client_send_frame(struct client *client, bool fin, uint8_t opcode, const void *payload,
                      size_t length)
{
    return client_send_frame_ex(client, fin, 0, opcode, true, payload, length, 0);
}

int client_send_close(struct client *client, int code, const char *reason)
{
    uint8_t payload[256];
    size_t length = 0;
    if (code != CLOSE_EMPTY) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        size_t reason_length = reason != NULL ? strnlen(reason, sizeof payload - 2) : 0;
        if (reason_length > 0)
            memcpy(payload + 2, reason, reason_length);
        length = 2 + reason_length;
    }
    return client_send_frame(client, true, WS_OPCODE_CLOSE, payload, length);
}

/* ==== Receiving ========================================================= */

int client_read_frame(struct client *client, struct frame *frame)
{
    struct ws_frame_header header;
    int size;
    memset(frame, 0, sizeof *frame);
    while ((size = ws_decode_frame_header(client->inbox + client->in_start,
                                          client->in_end - client->in_start, &header)) == 0) {
        if (client_fill(client) != 0)
            return -1;
    }
    if (size < 0)
        return -1;
    client->in_start += (size_t)size;
    *frame = (struct frame){.fin = header.fin,
                            .rsv = header.rsv,
                            .opcode = header.opcode,
                            .masked = header.masked,
                            .length = header.payload_length};
    frame->payload = malloc(frame->length + 1);
    if (frame->payload == NULL)
        return -1;
    for (uint64_t got = 0; got < frame->length;) {
        if (client->in_start == client->in_end && client_fill(client) != 0) {
            frame_free(frame);
            return -1;
        }
        size_t available = client->in_end - client->in_start;
        size_t take = frame->length - got < available ? (size_t)(frame->length - got) : available;
        memcpy(frame->payload + got, client->inbox + client->in_start, take);
        client->in_start += take;
        got += take;
    }
    frame->payload[frame->length] = '\0';
    return 0;
}

void frame_free(struct frame *frame)
{
    free(frame->payload);
    frame->payload = NULL;
}

uint8_t *client_read_message(struct client *client, uint8_t *opcode, size_t *length)
{
    uint8_t *message = NULL;
    size_t size = 0;
    struct frame frame;
    bool first = true;
    for (;;) {
        if (client_read_frame(client, &frame) != 0)
            break;
        bool expected = first ? (frame.opcode == WS_OPCODE_TEXT || frame.opcode == WS_OPCODE_BINARY)
                              : frame.opcode == WS_OPCODE_CONTINUATION;
        uint8_t *grown = expected ? realloc(message, size + frame.length + 1) : NULL;
        if (grown == NULL) {
            frame_free(&frame);
            break;
        }
        message = grown;
        memcpy(message + size, frame.payload, frame.length);
        size += frame.length;
        if (first)
            *opcode = frame.opcode;
        first = false;
        bool fin = frame.fin;
        frame_free(&frame);
        if (fin) {
            *length = size;
            return message;
        }
    }
    free(message);
    return NULL;
}

int client_read_message_and_pongs(struct client *client, char *message, size_t size,
                                  char pongs[][WS_MAX_CONTROL_PAYLOAD + 1], int max_pongs)
{
    int count = 0;
    bool first = true;
    message[0] = '\0';
    for (bool done = false; !done;) {
        struct frame frame;
        if (client_read_frame(client, &frame) != 0)
            return -1;
        bool in_sequence = true;
        if (frame.opcode == WS_OPCODE_PONG) {
            if (count < max_pongs)
                snprintf(pongs[count], WS_MAX_CONTROL_PAYLOAD + 1, "%s", (char *)frame.payload);
            count++;
        } else {
            in_sequence = first ? frame.opcode == WS_OPCODE_TEXT || frame.opcode == WS_OPCODE_BINARY
                                : frame.opcode == WS_OPCODE_CONTINUATION;
            strncat(message, (char *)frame.payload, size - strlen(message) - 1);
            first = false;
            done = frame.fin;
        }
        frame_free(&frame);
        if (!in_sequence)
            return -1;
    }
    return count;
}

bool client_wait_for_eof(struct client *client)
{
    uint8_t discard[4096];
    for (;;) {
        ssize_t n = recv(client->fd, discard, sizeof discard, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EINTR)
            return false; /* a timeout: the server kept the connection open */
    }
}

bool client_nothing_within(struct client *client, int milliseconds)
{
    if (client->in_start != client->in_end)
        return false;
    struct pollfd readable = {.fd = client->fd, .events = POLLIN};
    return poll(&readable, 1, milliseconds) == 0;
}

char *http_exchange(int port, const char *request, size_t length)
{
    struct client client;
    if (client_connect(&client, port) != 0)
        return NULL;
    char *response = NULL;
    if (client_send_raw(&client, request, length, 0) == 0) {
        while (client_fill(&client) == 0)
            ;
        size_t size = client.in_end - client.in_start;
        response = malloc(size + 1);
        if (response != NULL && size > 0)
            memcpy(response, client.inbox + client.in_start, size);
        if (response != NULL)
            response[size] = '\0';
    }
    client_close(&client);
    return response;
}

void fill_payload(uint8_t *buf, size_t length, bool text, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < length; i++) {
        x = x * 1103515245u + 12345u;
        uint8_t byte = (uint8_t)(x >> 16);
        buf[i] = text ? (uint8_t)(' ' + byte % 95) : byte;
    }
}

/* ==== Check test cases with a server ==================================== */

int test_server_port = -1;
pid_t test_server_pid = -1;
static int test_server_failures = 0; /* servers that did not exit cleanly */

/* Starts the running TCase's server. Without it no test can run: exits. */
static void fixture_start_server_with(const char *const *arguments)
{
    test_server_pid = server_start_with(&test_server_port, arguments, "/dev/null");
    if (test_server_pid <= 0) {
        fprintf(stderr, "cannot start the server under test (is ./server built?)\n");
        exit(EXIT_FAILURE);
    }
}

/* Stops it after the TCase's last test, and records it if it did not exit
 * with status 0: then run_suite() fails. */
static void fixture_stop_server(void)
{
    int status = server_stop(test_server_pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr,
                "the server under test did not exit cleanly on SIGTERM at the end of its "
                "TCase (wait status %#x)\n",
                (unsigned)status);
        test_server_failures++;
    }
    test_server_pid = -1;
}

/* Check calls a fixture with no arguments, and C has no closures, so a
 * fixture cannot be told which arguments its TCase's server takes. Instead,
 * each list of arguments gets a numbered slot, and each slot a start function
 * of its own that reads its list from there. TCases that start the server
 * with the same list (all those with none, say) share a slot. */
#define SERVER_SLOTS 8

static const char *const *slot_arguments[SERVER_SLOTS];
static int slots_used = 0;

#define START_SERVER_IN_SLOT(n)                                                                    \
    static void start_server_in_slot_##n(void)                                                     \
    {                                                                                              \
        fixture_start_server_with(slot_arguments[n]);                                              \
    }
START_SERVER_IN_SLOT(0)
START_SERVER_IN_SLOT(1)
START_SERVER_IN_SLOT(2)
START_SERVER_IN_SLOT(3)
START_SERVER_IN_SLOT(4)
START_SERVER_IN_SLOT(5)
START_SERVER_IN_SLOT(6)
START_SERVER_IN_SLOT(7)

static void (*const START_SERVER[SERVER_SLOTS])(void) = {
    start_server_in_slot_0, start_server_in_slot_1, start_server_in_slot_2, start_server_in_slot_3,
    start_server_in_slot_4, start_server_in_slot_5, start_server_in_slot_6, start_server_in_slot_7,
};

/* The slot of this list of arguments, given one if it has none yet. */
static int server_slot(const char *const *arguments)
{
    for (int slot = 0; slot < slots_used; slot++) {
        if (slot_arguments[slot] == arguments)
            return slot;
    }
    if (slots_used == SERVER_SLOTS) {
        fprintf(stderr, "more than %d lists of server arguments: add slots in tests/client.c\n",
                SERVER_SLOTS);
        exit(EXIT_FAILURE);
    }
    slot_arguments[slots_used] = arguments;
    return slots_used++;
}

TCase *tcase_with_server(Suite *suite, const char *name, const char *const *server_arguments,
                         int timeout_seconds)
{
    TCase *tcase = tcase_create(name);
    tcase_add_unchecked_fixture(tcase, START_SERVER[server_slot(server_arguments)],
                                fixture_stop_server);
    tcase_set_timeout(tcase, timeout_seconds);
    suite_add_tcase(suite, tcase);
    return tcase;
}

/* ==== Assertions for Check tests ======================================== */

void open_or_fail(struct client *client)
{
    ck_assert_msg(client_open(client, test_server_port) == 0,
                  "WebSocket handshake with 127.0.0.1:%d failed", test_server_port);
}

void expect_message(struct client *client, uint8_t opcode, const void *payload, size_t length)
{
    uint8_t got_opcode = 0;
    size_t got_length = 0;
    uint8_t *got = client_read_message(client, &got_opcode, &got_length);
    ck_assert_msg(got != NULL, "expected a message of %zu bytes, got none", length);
    ck_assert_msg(got_opcode == opcode, "expected opcode %u, got %u", opcode, got_opcode);
    ck_assert_msg(got_length == length, "expected %zu bytes, got %zu", length, got_length);
    ck_assert_msg(length == 0 || memcmp(got, payload, length) == 0, "echoed bytes differ");
    free(got);
}

void expect_pong(struct client *client, const void *payload, size_t length)
{
    struct frame frame;
    ck_assert_msg(client_read_frame(client, &frame) == 0, "expected a pong, got nothing");
    ck_assert_msg(frame.opcode == WS_OPCODE_PONG, "expected a pong, got opcode %u", frame.opcode);
    ck_assert_msg(frame.length == length, "pong of %llu bytes, expected %zu",
                  (unsigned long long)frame.length, length);
    ck_assert(length == 0 || memcmp(frame.payload, payload, length) == 0);
    frame_free(&frame);
}

void expect_close(struct client *client, int code)
{
    struct frame frame;
    ck_assert_msg(client_read_frame(client, &frame) == 0, "expected close %d, got nothing", code);
    ck_assert_msg(frame.opcode == WS_OPCODE_CLOSE, "expected close %d, got opcode %u", code,
                  frame.opcode);
    ck_assert_msg(!frame.masked && frame.fin && frame.rsv == 0 && frame.length != 1,
                  "malformed close frame");
    int got = frame.length >= 2 ? frame.payload[0] << 8 | frame.payload[1] : CLOSE_EMPTY;
    ck_assert_msg(got == code, "expected close code %d, got %d (reason \"%s\")", code, got,
                  frame.length > 2 ? (char *)frame.payload + 2 : "");
    frame_free(&frame);
    ck_assert_msg(client_wait_for_eof(client), "server kept the connection open after close");
    client_close(client);
}

void close_cleanly(struct client *client)
{
    ck_assert_int_eq(client_send_close(client, 1000, ""), 0);
    expect_close(client, 1000);
}

int run_suite(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (test_server_failures > 0)
        printf("%d server(s) under test did not survive their tests\n", test_server_failures);
    return failed == 0 && test_server_failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
