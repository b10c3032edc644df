/* fuzz_connection.c -- libFuzzer target: a whole WebSocket connection after
 * the handshake (ws.c sections 4, 5 and 6): the frame decoder, control
 * frames, fragmentation, the message size limit and UTF-8, as ws_receive()
 * meets them.
 *
 * The input is everything a client sends after its request. It goes into one
 * end of a socketpair; the server's side runs the article's loop (receive,
 * echo, close) on the other end until the connection closes or fails, and a
 * second thread reads whatever the server sends, so that the server never
 * blocks on a full socket. Besides crashes, it checks what ws_receive()
 * promises the application: a chunk never overflows the buffer, a message
 * never passes the size limit, and a text message is valid UTF-8 (against
 * reference_utf8.h) when its last chunk has been delivered. The client
 * offers permessage-deflate and the server accepts it (RFC 7692), so a frame
 * with RSV1 starts a compressed message, which is inflated, with the limit
 * on its inflated size, and every echo is compressed. Run with "make fuzz". */
#define _POSIX_C_SOURCE 200809L

#include "../ws.h"
#include "reference_utf8.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MESSAGE 4096 /* small, so that 1009 is easy to reach */

static const char REQUEST[] =
    "GET / HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/* The client's side, after it has sent the input: reads until the end. */
static void *read_until_end(void *arg)
{
    int fd = *(int *)arg;
    char discard[4096];
    while (recv(fd, discard, sizeof discard, 0) > 0) {
    }
    return NULL;
}

/* The article's loop, with the checks. */
static void serve(struct ws *ws)
{
    static uint8_t message[MAX_MESSAGE];
    size_t message_length = 0;
    uint8_t buffer[1024];
    struct ws_receive_result result;
    while (ws_receive(ws, buffer, sizeof buffer, &result) == 0) {
        if (result.close_status != WS_CLOSE_NONE) {
            ws_close(ws, result.close_status, result.close_description);
            return;
        }
        if (result.count > sizeof buffer || message_length + result.count > MAX_MESSAGE)
            abort();
        memcpy(message + message_length, buffer, result.count);
        message_length += result.count;
        if (result.end_of_message) {
            if (result.message_type == WS_MESSAGE_TEXT &&
                !reference_utf8_is_valid(message, message_length))
                abort();
            message_length = 0;
        }
        if (ws_send(ws, buffer, result.count, result.message_type, result.end_of_message) != 0)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ws_request request;
    static bool parsed = false;
    struct ws_refusal refusal;
    if (!parsed) {
        memcpy(request.data, REQUEST, sizeof REQUEST - 1);
        request.length = sizeof REQUEST - 1;
        if (ws_parse_request(&request, &refusal) != 0)
            abort();
        parsed = true;
    }
    int ends[2];
    if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM, 0, ends) != 0)
        return 0;
    /* The input must fit in the socket before anyone reads it. */
    int buffer_size = 256 * 1024;
    setsockopt(ends[1], SOL_SOCKET, SO_SNDBUF, &buffer_size, sizeof buffer_size);
    if (size > 0 && send(ends[1], data, size, 0) != (ssize_t)size)
        abort();
    shutdown(ends[1], SHUT_WR);
    pthread_t client;
    if (pthread_create(&client, NULL, read_until_end, &ends[1]) != 0)
        abort();
    const struct ws_settings settings = {
        .max_message_size = MAX_MESSAGE, .stop_fd = -1, .permessage_deflate = true};
    struct ws_transport transport;
    ws_transport_init(&transport, ends[0]);
    struct ws *ws = ws_accept(&transport, &request, &settings, &refusal);
    if (ws != NULL) {
        serve(ws);
        ws_free(ws);
    }
    close(ends[0]);
    pthread_join(client, NULL);
    close(ends[1]);
    return 0;
}
