/* ws.c -- the WebSocket protocol (RFC 6455): handshake, frames, messages.
 *
 * Read it from the top: each section builds on the ones above it.
 *
 *   1. Sending and receiving bytes     (partial writes, EINTR, SIGPIPE; TCP or TLS)
 *   2. The HTTP request                (reading it, bounded; parsing it)
 *   3. TLS                             (wss://: certificates, the TLS handshake)
 *   4. The opening handshake           (RFC 6455 §4.2)
 *   5. Frames                          (RFC 6455 §5.2, §5.3)
 *   6. A connection: receive, send, close
 *      (and compression, RFC 7692, when the client asked for it)
 *   7. UTF-8                           (RFC 6455 §8.1)
 *   8. Close codes                     (RFC 6455 §7.4)
 *
 * Nothing in this file knows what the application does with a message:
 * that is notifier.c's business.
 */
#define _POSIX_C_SOURCE 200809L

#include "ws.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

/* zlib's next_in is then a pointer to const: we inflate from bytes we may
 * not change (the trailer below). */
#define ZLIB_CONST
#include <zlib.h>

/* How long ws_close() waits for the peer's close frame, in milliseconds. */
#define WS_CLOSE_TIMEOUT_MILLISECONDS 5000

/* How long we keep reading (and discarding) after our last byte was sent,
 * so that the peer has time to read it; see end_tcp_connection(). */
#define WS_LINGER_MILLISECONDS 2000

/* Bytes received but not yet used. One recv() fills it as far as it can, so a
 * small frame (header and payload together) costs one system call. It must
 * hold the bytes a client sent after its request, which are fewer than
 * WS_MAX_REQUEST_SIZE. */
#define WS_INBOX_SIZE WS_MAX_REQUEST_SIZE

/* permessage-deflate (RFC 7692): our choices for the compressor, which costs
 * most of the memory. zlib needs (1 << (window bits + 2)) + (1 << (memLevel +
 * 9)) bytes to deflate (zconf.h), so a 4 KiB window (12 bits) and memLevel 5
 * make about 32 KiB, where zlib's defaults (15 and 8) make 256 KiB, for
 * every connection. They are Python's websockets' defaults, documented there
 * for the same reason; small messages compress almost as well. */
#define DEFLATE_MAX_WINDOW_BITS 12
#define DEFLATE_MEM_LEVEL       5

/* RFC 7692 §7.1.2.2: without client_max_window_bits in our answer, the client
 * may use any window up to 32 KiB (15 bits): we must inflate with that. */
#define DEFLATE_LARGEST_WINDOW_BITS 15

/* Compressed messages we send go through a buffer of this size, one per
 * connection: each time deflate() fills it, it goes out as a frame. */
#define DEFLATE_BUFFER_SIZE 4096

/* RFC 6455 §1.3: the GUID every server appends to the client's key. */
static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* The state of one connection. The fields are ordered by alignment, largest
 * first, so that the compiler needs no padding between them (gcc -Wpadded
 * finds none); the comments say which part of the protocol each serves. */
struct ws {
    struct ws_settings settings;

    /* The data frame whose payload ws_receive() is handing out, how much of
     * it has been handed out, and how large the message it belongs to has
     * grown (RFC 6455 §5.4: one message may be spread over several frames;
     * settings.max_message_size limits the whole message). */
    struct ws_frame_header frame;
    uint64_t frame_bytes_read;
    uint64_t message_size;

    /* For ws_get_stats(). */
    uint64_t bytes_received;
    uint64_t bytes_sent;

    /* Timers, in milliseconds of now_milliseconds(). close_deadline: when we
     * stop waiting for the peer's close frame (0: not waiting). Keep-alive:
     * when a byte last arrived, and when we sent a ping that no byte has
     * answered yet (0: none). */
    int64_t close_deadline;
    int64_t last_heard;
    int64_t ping_sent_at;
    /* When we sent a ping that no pong has answered yet (0: none). Other
     * bytes do not clear it, as they do ping_sent_at: see
     * end_closed_connection(). */
    int64_t pong_awaited_since;

    struct ws_transport transport; /* TCP, or TLS over TCP */

    /* Received bytes not yet used are inbox[in_start] .. inbox[in_end - 1].
     * The inbox is WS_INBOX_SIZE bytes while the connection reads, and NULL
     * while it waits between two messages with nothing buffered
     * (release_inbox()). */
    uint8_t *inbox;
    size_t in_start;
    size_t in_end;

    /* permessage-deflate (RFC 7692), once agreed: zlib's streams and our
     * output buffer, made when first needed (NULL until then). */
    struct compression *compression;

    int frame_header_size;             /* 2 to 14 bytes, for --trace */
    enum ws_state state;               /* the closing handshake (RFC 6455 §7), as .NET names it */
    enum ws_message_type message_type; /* of the message ws_receive() is in */

    /* The close frames: the status we sent (for the log line), and the
     * status and reason the peer sent. */
    enum ws_close_status sent_close_status;
    enum ws_close_status peer_close_status;

    struct ws_utf8 utf8; /* the text message ws_receive() is in (RFC 6455 §8.1) */
    bool in_message;     /* ws_receive() is inside a message... */
    bool in_frame;       /* ...and inside one of its data frames */

    /* ws_send() is in the middle of a message (its next frame continues it),
     * and whether that message is text (for --trace). */
    bool sending_message;
    bool sending_text;

    /* Shutdown: set once settings.stop_fd has become readable. We go away
     * at the first message boundary where nothing more has arrived. */
    bool stop_requested;

    /* permessage-deflate: whether the handshake agreed to it, on what terms,
     * and whether the message ws_receive() is in is compressed (RSV1 on its
     * first frame, RFC 7692 §6). */
    bool deflate_agreed;
    bool message_compressed;
    struct ws_deflate_params deflate;

    char peer_close_description[WS_MAX_CLOSE_REASON + 1];
};

/* ==== 1. Sending and receiving bytes ==================================== */

/* Every byte goes through the functions of this section, over plain TCP or
 * through TLS (section 3), and nothing above them knows which. */

/* A clock for timeouts: milliseconds since some fixed moment. CLOCK_MONOTONIC
 * never jumps when someone sets the date, as the wall clock may. */
static int64_t now_milliseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* How long poll() should wait to reach deadline: 0 if it has passed, -1
 * (for ever) if deadline is 0, which means "no deadline". */
static int milliseconds_until(int64_t deadline)
{
    if (deadline == 0)
        return -1;
    int64_t left = deadline - now_milliseconds();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits until fd is ready for events (POLLIN: bytes to read; POLLOUT: room
 * to write), deadline passes (0: none), or stop_fd (-1: none) becomes
 * readable. Returns 1 when fd is ready, 0 when the deadline passed, or -1 for
 * the stop (errno 0) or an error. */
static int wait_until_ready(int fd, short events, int64_t deadline, int stop_fd)
{
    for (;;) {
        struct pollfd fds[2] = {{.fd = fd, .events = events}, {.fd = stop_fd, .events = POLLIN}};
        int ready = poll(fds, stop_fd >= 0 ? 2 : 1, milliseconds_until(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            return -1;
        if (ready > 0 && stop_fd >= 0 && fds[1].revents != 0) {
            errno = 0;
            return -1;
        }
        return ready > 0 ? 1 : 0;
    }
}

/* Sends every byte of the iovcnt buffers in iov over a TCP socket, however
 * many send calls that takes: the kernel may accept only part of what we hand
 * it. MSG_NOSIGNAL makes a write to a closed connection fail with EPIPE
 * instead of raising SIGPIPE, whose default action would end the whole
 * server. flags may add MSG_MORE (send_frame()). iov is used up. */
static int send_all_tcp(int fd, struct iovec *iov, int iovcnt, int flags)
{
    while (iovcnt > 0) {
        struct msghdr message = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL | flags);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                errno = ETIMEDOUT; /* SO_SNDTIMEO: the peer stopped reading */
            return -1;
        }
        /* Skip the buffers that went out whole, then trim the one that did not. */
        size_t left = (size_t)sent;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* After OpenSSL said "want read" or "want write": waits until the socket is
 * ready for it, for at most the transport's send timeout. Returns 0, or -1
 * (ETIMEDOUT: the peer stopped reading). */
static int wait_for_tls(const struct ws_transport *transport, int tls_error)
{
    short events = tls_error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    int timeout = transport->send_timeout_milliseconds;
    int64_t deadline = timeout > 0 ? now_milliseconds() + timeout : 0;
    int ready = wait_until_ready(transport->fd, events, deadline, -1);
    if (ready == 0)
        errno = ETIMEDOUT;
    return ready > 0 ? 0 : -1;
}

/* Sends length bytes through TLS, which encrypts them into records. The
 * socket does not block (see ws_start_tls()): when it is full, OpenSSL says
 * "want write", and we wait and call it again with the same bytes, as it
 * requires. */
static int send_tls(const struct ws_transport *transport, const void *bytes, size_t length)
{
    for (;;) {
        size_t written = 0;
        ERR_clear_error();
        if (length == 0 || SSL_write_ex(transport->tls, bytes, length, &written) == 1)
            return 0;
        int error = SSL_get_error(transport->tls, 0);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
            errno = EPIPE; /* the connection is broken */
            return -1;
        }
        if (wait_for_tls(transport, error) != 0)
            return -1;
    }
}

/* A frame is a header and a payload: TLS would seal each into a record of
 * its own, with a system call and some 22 bytes of overhead each. So a small
 * frame is first gathered into one buffer, and goes out as one record. */
#define WS_TLS_GATHER_SIZE 1024

static int send_all_tls(const struct ws_transport *transport, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total <= WS_TLS_GATHER_SIZE) {
        uint8_t gathered[WS_TLS_GATHER_SIZE];
        size_t length = 0;
        for (int i = 0; i < iovcnt; i++) {
            memcpy(gathered + length, iov[i].iov_base, iov[i].iov_len);
            length += iov[i].iov_len;
        }
        return send_tls(transport, gathered, length);
    }
    for (int i = 0; i < iovcnt; i++) {
        if (send_tls(transport, iov[i].iov_base, iov[i].iov_len) != 0)
            return -1;
    }
    return 0;
}

/* Sends every byte of the iovcnt buffers in iov. Returns 0, or -1 (EPIPE:
 * the connection is broken; ETIMEDOUT: the peer stopped reading). iov may
 * be used up. flags is 0, or MSG_MORE: more is coming at once, and TCP may
 * hold these bytes back to send them with it (TLS ignores it). */
static int send_all(const struct ws_transport *transport, struct iovec *iov, int iovcnt, int flags)
{
    if (transport->tls != NULL)
        return send_all_tls(transport, iov, iovcnt);
    return send_all_tcp(transport->fd, iov, iovcnt, flags);
}

static int send_bytes(const struct ws_transport *transport, const void *bytes, size_t length)
{
    struct iovec iov = {.iov_base = (void *)bytes, .iov_len = length};
    return send_all(transport, &iov, 1, 0);
}

/* Receives what has arrived, over TCP, without waiting (MSG_DONTWAIT). */
static ssize_t receive_available_tcp(int fd, void *buf, size_t length)
{
    for (;;) {
        ssize_t received = recv(fd, buf, length, MSG_DONTWAIT);
        if (received > 0)
            return received;
        if (received == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Receives what has arrived, through TLS: OpenSSL reads records from the
 * socket (which does not block) and decrypts them. A record that has only
 * partly arrived gives nothing yet ("want read"). */
static ssize_t receive_available_tls(const struct ws_transport *transport, void *buf, size_t length)
{
    size_t received = 0;
    ERR_clear_error();
    if (SSL_read_ex(transport->tls, buf, length, &received) == 1)
        return (ssize_t)received;
    switch (SSL_get_error(transport->tls, 0)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0; /* nothing yet (or TLS wants to answer something: the next write will) */
    case SSL_ERROR_SSL:
        errno = EPROTO; /* a record that does not decrypt, or an alert */
        return -1;
    default:
        errno = ECONNRESET; /* the peer closed the connection */
        return -1;
    }
}

/* Receives at most length bytes of what has already arrived, without
 * waiting. Returns the count; 0 when nothing has arrived yet; or -1 on an
 * error, or when the peer closed the connection (errno is then ECONNRESET).
 * Where bytes are probably there already (the rest of a large message, a
 * request), callers read first and wait with poll() only after a 0: one
 * system call instead of two. */
static ssize_t receive_available(const struct ws_transport *transport, void *buf, size_t length)
{
    if (transport->tls != NULL)
        return receive_available_tls(transport, buf, length);
    return receive_available_tcp(transport->fd, buf, length);
}

/* True when TLS holds decrypted bytes that we have not asked for yet: poll()
 * cannot see them, as they have left the socket already. */
static bool has_buffered_bytes(const struct ws_transport *transport)
{
    return transport->tls != NULL && SSL_pending(transport->tls) > 0;
}

/* Ends our side of a connection gently. If we simply closed the socket
 * while the peer's bytes were still unread, the kernel would answer with a
 * reset (RST), and the peer could lose our last frame or response before
 * reading it. So we shut down our sending side (the peer reads end-of-file
 * after our last byte) and read and discard until the peer closes too, for at
 * most WS_LINGER_MILLISECONDS. RFC 6455 §7.1.1 asks the server to be the one
 * that closes the TCP connection first; this is how. Over TLS, a
 * "close_notify" alert goes first: it tells the peer that the end of the
 * stream is real, not cut by an attacker (RFC 8446 §6.1). */
static void end_tcp_connection(const struct ws_transport *transport)
{
    if (transport->tls != NULL)
        (void)SSL_shutdown(transport->tls); /* we do not wait for the peer's */
    int64_t deadline = now_milliseconds() + WS_LINGER_MILLISECONDS;
    shutdown(transport->fd, SHUT_WR);
    while (wait_until_ready(transport->fd, POLLIN, deadline, -1) > 0) {
        char discard[1024];
        ssize_t received = recv(transport->fd, discard, sizeof discard, MSG_DONTWAIT);
        if (received == 0 || (received < 0 && errno != EAGAIN && errno != EINTR))
            return;
    }
}

void ws_transport_init(struct ws_transport *transport, int fd)
{
    *transport = (struct ws_transport){.fd = fd, .opened_at = now_milliseconds()};
}

void ws_transport_close(struct ws_transport *transport)
{
    SSL_free(transport->tls); /* does nothing for NULL */
    transport->tls = NULL;
    close(transport->fd);
    transport->fd = -1;
}

/* ==== 2. The HTTP request =============================================== */

static void set_refusal(struct ws_refusal *refusal, int status, const char *reason)
{
    refusal->status = status;
    refusal->reason = reason;
    refusal->retry_after_seconds = 0;
}

size_t ws_end_of_headers(const char *data, size_t length)
{
    for (size_t i = 0; i + 1 < length; i++) {
        if (data[i] != '\n')
            continue;
        if (data[i + 1] == '\n')
            return i + 2;
        if (i + 2 < length && data[i + 1] == '\r' && data[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Cuts the line starting at *cursor off the header block: writes a NUL over
 * its line ending and moves *cursor to the next line. */
static char *take_line(char **cursor)
{
    char *line = *cursor;
    char *newline = strchr(line, '\n');
    *newline = '\0';
    *cursor = newline + 1;
    if (newline > line && newline[-1] == '\r')
        newline[-1] = '\0';
    return line;
}

/* RFC 9112 §3: the request line is visible ASCII, its three parts separated
 * by single spaces. Anything else (an escape sequence, a stray CR, a byte
 * above ASCII) is refused, and so never reaches a log or a terminal. */
static bool is_printable_ascii(const char *text)
{
    for (; *text != '\0'; text++) {
        if (*text < 0x20 || *text > 0x7E)
            return false;
    }
    return true;
}

/* "GET /chat HTTP/1.1": three words separated by single spaces. */
static int parse_request_line(struct ws_request *request, char *line)
{
    char *first_space = strchr(line, ' ');
    char *second_space = first_space ? strchr(first_space + 1, ' ') : NULL;
    if (!is_printable_ascii(line) || second_space == NULL || strchr(second_space + 1, ' ') != NULL)
        return -1;
    *first_space = '\0';
    *second_space = '\0';
    request->method = line;
    request->target = first_space + 1;
    request->version = second_space + 1;
    if (*request->method == '\0' || *request->target == '\0' || *request->version == '\0')
        return -1;
    return 0;
}

/* RFC 9110 §5.1: a header name is a "token": letters, digits and these. */
static bool is_token(const char *text, size_t length)
{
    static const char symbols[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        bool allowed = c != '\0' && c < 0x80 && (isalnum(c) || strchr(symbols, c) != NULL);
        if (!allowed)
            return false;
    }
    return length > 0;
}

/* RFC 9110 §5.5: a header value holds visible characters, spaces and tabs,
 * and bytes above ASCII (obs-text); never another control character. */
static bool is_field_value(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if ((*c < 0x20 && *c != '\t') || *c == 0x7F)
            return false;
    }
    return true;
}

static char *trim_whitespace(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t length = strlen(text);
    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t'))
        text[--length] = '\0';
    return text;
}

/* "Name: value". RFC 9112 §5.1: no whitespace is allowed between the name and
 * the colon, so the name must be a token right up to the colon; and §5.2: a
 * line starting with whitespace (obsolete folding of a long header over
 * several lines) is refused, since it does not start with a token either. */
static int parse_header_line(struct ws_request *request, char *line, struct ws_refusal *refusal)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || !is_token(line, (size_t)(colon - line))) {
        set_refusal(refusal, 400, "malformed header line");
        return -1;
    }
    if (!is_field_value(colon + 1)) {
        set_refusal(refusal, 400, "control character in a header value");
        return -1;
    }
    if (request->header_count == WS_MAX_HEADERS) {
        set_refusal(refusal, 431, "too many header fields");
        return -1;
    }
    *colon = '\0';
    struct ws_header *header = &request->headers[request->header_count++];
    header->name = line;
    header->value = trim_whitespace(colon + 1);
    return 0;
}

int ws_parse_request(struct ws_request *request, struct ws_refusal *refusal)
{
    request->method = request->target = request->version = NULL;
    request->header_count = 0;
    size_t end = ws_end_of_headers(request->data, request->length);
    if (end == 0) {
        set_refusal(refusal, 400, "the request does not end with a blank line");
        return -1;
    }
    if (memchr(request->data, '\0', end) != NULL) {
        set_refusal(refusal, 400, "NUL byte in request");
        return -1;
    }
    request->header_length = end;

    /* Every line of the block, the blank one included, ends with '\n', and
     * take_line() cuts them off one by one until it reaches the blank line. */
    char *cursor = request->data;
    if (parse_request_line(request, take_line(&cursor)) != 0) {
        set_refusal(refusal, 400, "malformed request line");
        return -1;
    }
    for (char *line = take_line(&cursor); *line != '\0'; line = take_line(&cursor)) {
        if (parse_header_line(request, line, refusal) != 0)
            return -1;
    }
    return 0;
}

/* When the opening handshake must be over: handshake_timeout_seconds after
 * the client connected, or 0 for no deadline. One deadline for the whole
 * request (and the TLS handshake before it), not one per read: a client that
 * sends a byte every few seconds must not reset it (slowloris). */
static int64_t handshake_deadline(const struct ws_transport *transport,
                                  const struct ws_settings *settings)
{
    if (settings->handshake_timeout_seconds == 0)
        return 0;
    return transport->opened_at + settings->handshake_timeout_seconds * 1000LL;
}

/* Waits until the request's next bytes can be read, the deadline passes
 * (408), or stop_fd becomes readable (503). Returns 0 for "readable", or -1
 * with *refusal. */
static int wait_for_request_bytes(const struct ws_transport *transport, int64_t deadline,
                                  int stop_fd, struct ws_refusal *refusal)
{
    int ready = wait_until_ready(transport->fd, POLLIN, deadline, stop_fd);
    if (ready > 0)
        return 0;
    if (ready == 0)
        set_refusal(refusal, 408, "the request did not arrive in time");
    else if (errno == 0)
        set_refusal(refusal, 503, "the server is shutting down");
    else
        set_refusal(refusal, 0, "poll failed");
    return -1;
}

int ws_read_request(struct ws_transport *transport, struct ws_request *request,
                    struct ws_refusal *refusal, const struct ws_settings *settings)
{
    int64_t deadline = handshake_deadline(transport, settings);
    /* A request refused before it is parsed has no fields: the caller's
     * answer (ws_refuse() looks at the method) must not read stale ones. */
    request->method = request->target = request->version = NULL;
    request->header_count = 0;
    request->length = 0;
    while (ws_end_of_headers(request->data, request->length) == 0) {
        if (request->length == WS_MAX_REQUEST_SIZE) {
            set_refusal(refusal, 431, "request header block larger than 8 KiB");
            return -1;
        }
        ssize_t received = receive_available(transport, request->data + request->length,
                                             WS_MAX_REQUEST_SIZE - request->length);
        if (received < 0) {
            set_refusal(refusal, 0, "connection closed before the request was complete");
            return -1;
        }
        if (received == 0 &&
            wait_for_request_bytes(transport, deadline, settings->stop_fd, refusal) != 0)
            return -1;
        request->length += (size_t)received;
    }
    return ws_parse_request(request, refusal);
}

const char *ws_request_header(const struct ws_request *request, const char *name)
{
    for (size_t i = 0; i < request->header_count; i++) {
        if (strcasecmp(request->headers[i].name, name) == 0)
            return request->headers[i].value;
    }
    return NULL;
}

const char *ws_status_text(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Sends the response for a refusal (see ws_refuse()). The head has a
 * bounded length (a status, its phrase, a number and one optional header);
 * the reason, which the caller chose and which may be of any length, goes out
 * from where it is, as the body. */
static int send_refusal(const struct ws_transport *transport, const struct ws_request *request,
                        const struct ws_refusal *refusal)
{
    /* RFC 6455 §4.4: name the version we do speak. RFC 9110 §15.5.22: a 426
     * names the protocol to upgrade to. */
    char extra[64] = "";
    if (refusal->status == 426)
        snprintf(extra, sizeof extra, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    else if (refusal->retry_after_seconds > 0)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", refusal->retry_after_seconds);
    size_t reason_length = strlen(refusal->reason);
    char head[256];
    int head_length =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "%s\r\n",
                 refusal->status, ws_status_text(refusal->status), reason_length + 1, extra);
    if (head_length < 0 || (size_t)head_length >= sizeof head) {
        errno = EOVERFLOW; /* a status phrase longer than any we have */
        return -1;
    }
    struct iovec iov[3] = {{.iov_base = head, .iov_len = (size_t)head_length},
                           {.iov_base = (void *)refusal->reason, .iov_len = reason_length},
                           {.iov_base = "\n", .iov_len = 1}};
    /* A HEAD request gets the headers without the body (RFC 9110 §9.3.2). */
    bool is_head =
        request != NULL && request->method != NULL && strcmp(request->method, "HEAD") == 0;
    return send_all(transport, iov, is_head ? 1 : 3, 0);
}

int ws_refuse(struct ws_transport *transport, const struct ws_request *request,
              const struct ws_refusal *refusal)
{
    if (refusal->status == 0)
        return 0; /* the client is gone: there is nobody to answer */
    int result = send_refusal(transport, request, refusal);
    end_tcp_connection(transport);
    return result;
}

int ws_send_page(struct ws_transport *transport, const struct ws_request *request,
                 const char *content_type, const char *body, size_t length)
{
    /* The content type goes into a header line: a line break in it would
     * end the line and start a header of someone else's choosing. */
    if (!is_field_value(content_type)) {
        errno = EINVAL;
        return -1;
    }
    char length_line[64];
    int length_line_length = snprintf(length_line, sizeof length_line,
                                      "\r\nContent-Length: %zu\r\n"
                                      "Connection: close\r\n"
                                      "\r\n",
                                      length);
    static const char status_line[] = "HTTP/1.1 200 OK\r\nContent-Type: ";
    struct iovec iov[4] = {
        {.iov_base = (void *)status_line, .iov_len = sizeof status_line - 1},
        {.iov_base = (void *)content_type, .iov_len = strlen(content_type)},
        {.iov_base = length_line, .iov_len = (size_t)length_line_length},
        {.iov_base = (void *)body, .iov_len = length},
    };
    /* A HEAD request gets the headers without the body (RFC 9110 §9.3.2). */
    bool is_head = strcmp(request->method, "HEAD") == 0;
    int result = send_all(transport, iov, is_head ? 3 : 4, 0);
    end_tcp_connection(transport);
    return result;
}

int ws_refuse_without_waiting(int fd, const struct ws_refusal *refusal)
{
    struct ws_transport transport;
    ws_transport_init(&transport, fd);
    int result = send_refusal(&transport, NULL, refusal);
    shutdown(fd, SHUT_WR);
    return result;
}

/* ==== 3. TLS (wss://) =================================================== */

/* OpenSSL's libssl does the cryptography; we decide which versions we speak,
 * load the certificate, and run the TLS handshake under the same timeout and
 * stop signal as the HTTP request. From then on the transport's functions
 * (section 1) call SSL_read_ex() and SSL_write_ex() instead of recv() and
 * sendmsg(), and nothing above them changes. */

struct ws_tls {
    SSL_CTX *context;
};

/* Writes what went wrong into error: what we were doing, then OpenSSL's
 * reason ("No such file or directory", "key values mismatch"). Returns
 * NULL, for the caller to return. */
static struct ws_tls *tls_load_error(SSL_CTX *context, const char *what, const char *file,
                                     char *error, size_t error_size)
{
    /* The first error in OpenSSL's queue is the cause; the later ones only
     * say which calls it went through. A file that cannot be opened is a
     * "system" error, whose reason is the errno that fopen() set. */
    unsigned long code = ERR_peek_error();
    const char *reason = ERR_SYSTEM_ERROR(code) ? strerror((int)ERR_GET_REASON(code))
                                                : ERR_reason_error_string(code);
    snprintf(error, error_size, "%s '%s': %s", what, file,
             reason != NULL ? reason : "unknown error");
    ERR_clear_error();
    SSL_CTX_free(context);
    return NULL;
}

struct ws_tls *ws_tls_load(const char *certificate_file, const char *key_file, char *error,
                           size_t error_size)
{
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL)
        return tls_load_error(NULL, "cannot set up TLS for", certificate_file, error, error_size);
    /* TLS 1.0 and 1.1 are deprecated (RFC 8996). Renegotiation (TLS 1.2) would
     * let a client make us redo the costly handshake at will. Releasing the
     * read and write buffers while a connection is idle saved 9.5 KiB of the
     * 71 KiB an idle wss:// connection cost (1,000 held; ws:// costs 25). */
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(context, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(context, certificate_file) != 1)
        return tls_load_error(context, "cannot load the certificate", certificate_file, error,
                              error_size);
    if (SSL_CTX_use_PrivateKey_file(context, key_file, SSL_FILETYPE_PEM) != 1)
        return tls_load_error(context, "cannot load the private key", key_file, error, error_size);
    if (SSL_CTX_check_private_key(context) != 1)
        return tls_load_error(context, "the private key does not match the certificate", key_file,
                              error, error_size);
    struct ws_tls *tls = malloc(sizeof *tls);
    if (tls == NULL)
        return tls_load_error(context, "cannot set up TLS for", certificate_file, error,
                              error_size);
    tls->context = context;
    return tls;
}

void ws_tls_free(struct ws_tls *tls)
{
    if (tls != NULL)
        SSL_CTX_free(tls->context);
    free(tls);
}

/* A TLS connection starts with a handshake record: its first byte is 22
 * (RFC 8446 §5.1, ContentType handshake). A client that sends anything else
 * speaks plain HTTP, most likely because its URL says ws:// or http://. */
#define TLS_HANDSHAKE_RECORD 22

/* Waits for the client's first byte and looks at it without taking it
 * (MSG_PEEK). Returns 0 when it starts a TLS handshake, or -1 with
 * *refusal. */
static int expect_tls_client(const struct ws_transport *transport, int64_t deadline, int stop_fd,
                             struct ws_refusal *refusal)
{
    if (wait_for_request_bytes(transport, deadline, stop_fd, refusal) != 0) {
        if (refusal->status == 408)
            set_refusal(refusal, 0, "the TLS handshake did not complete in time");
        refusal->status = 0; /* without TLS, we cannot say so to a TLS client */
        return -1;
    }
    uint8_t first = 0;
    ssize_t peeked = recv(transport->fd, &first, 1, MSG_PEEK);
    if (peeked <= 0) {
        set_refusal(refusal, 0, "connection closed before the TLS handshake");
        return -1;
    }
    if (first != TLS_HANDSHAKE_RECORD) {
        set_refusal(refusal, 400, "this port speaks TLS: use a wss:// (or https://) URL");
        return -1;
    }
    return 0;
}

/* Runs SSL_accept() until the handshake is done. The socket does not block,
 * so SSL_accept() returns whenever it must wait for the client ("want
 * read") or for room to send ("want write"); we wait for that, within the
 * deadline, and call it again. Returns 0, or -1 with *refusal (status 0). */
static int run_tls_handshake(SSL *session, int fd, int64_t deadline, int stop_fd,
                             struct ws_refusal *refusal)
{
    for (;;) {
        ERR_clear_error();
        int result = SSL_accept(session);
        if (result == 1)
            return 0;
        int error = SSL_get_error(session, result);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
            const char *reason = ERR_reason_error_string(ERR_peek_last_error());
            set_refusal(refusal, 0, reason != NULL ? reason : "the client closed the connection");
            return -1;
        }
        short events = error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        int ready = wait_until_ready(fd, events, deadline, stop_fd);
        if (ready <= 0) {
            set_refusal(refusal, 0,
                        ready == 0 ? "the TLS handshake did not complete in time"
                                   : "the server is shutting down");
            return -1;
        }
    }
}

int ws_start_tls(struct ws_transport *transport, struct ws_tls *tls,
                 const struct ws_settings *settings, struct ws_refusal *refusal)
{
    int64_t deadline = handshake_deadline(transport, settings);
    if (expect_tls_client(transport, deadline, settings->stop_fd, refusal) != 0)
        return -1;
    int flags = fcntl(transport->fd, F_GETFL);
    SSL *session = SSL_new(tls->context);
    if (flags < 0 || fcntl(transport->fd, F_SETFL, flags | O_NONBLOCK) != 0 || session == NULL ||
        SSL_set_fd(session, transport->fd) != 1) {
        SSL_free(session);
        set_refusal(refusal, 0, "cannot start TLS");
        return -1;
    }
    if (run_tls_handshake(session, transport->fd, deadline, settings->stop_fd, refusal) != 0) {
        SSL_free(session);
        return -1;
    }
    transport->tls = session;
    return 0;
}

const char *ws_transport_security(const struct ws_transport *transport, char *out, size_t size)
{
    if (transport->tls == NULL)
        snprintf(out, size, "%s", "");
    else
        snprintf(out, size, "%s %s", SSL_get_version(transport->tls),
                 SSL_get_cipher_name(transport->tls));
    return out;
}

/* ==== 4. The opening handshake (RFC 6455 §4.2) ========================== */

static size_t count_headers(const struct ws_request *request, const char *name)
{
    size_t count = 0;
    for (size_t i = 0; i < request->header_count; i++)
        count += strcasecmp(request->headers[i].name, name) == 0;
    return count;
}

/* True when the comma-separated list contains token (case-insensitive), as in
 * "Connection: keep-alive, Upgrade". */
static bool list_has_token(const char *list, const char *token)
{
    size_t token_length = strlen(token);
    while (*list != '\0') {
        list += strspn(list, " \t,");
        size_t item_length = strcspn(list, ",");
        size_t trimmed = item_length;
        while (trimmed > 0 && (list[trimmed - 1] == ' ' || list[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == token_length && strncasecmp(list, token, token_length) == 0)
            return true;
        list += item_length;
    }
    return false;
}

/* Like list_has_token(), over every header called name: a list header may be
 * sent as several lines (RFC 9110 §5.3). */
static bool header_has_token(const struct ws_request *request, const char *name, const char *token)
{
    for (size_t i = 0; i < request->header_count; i++) {
        if (strcasecmp(request->headers[i].name, name) == 0 &&
            list_has_token(request->headers[i].value, token))
            return true;
    }
    return false;
}

/* "HTTP/1.1" or later. */
static bool is_http_1_1_or_later(const char *version)
{
    unsigned major = 0;
    unsigned minor = 0;
    char end = '\0';
    if (sscanf(version, "HTTP/%u.%u%c", &major, &minor, &end) != 2)
        return false;
    return major > 1 || (major == 1 && minor >= 1);
}

/* RFC 6455 §4.1: the key is 16 random bytes in base64, which is always 24
 * characters ending in "==". */
static bool is_valid_key(const char *key)
{
    if (strlen(key) != 24 || key[21] == '=' || strcmp(key + 22, "==") != 0)
        return false;
    unsigned char decoded[18];
    return EVP_DecodeBlock(decoded, (const unsigned char *)key, 24) == 18;
}

bool ws_is_websocket_request(const struct ws_request *request, struct ws_refusal *refusal)
{
    const char *key = ws_request_header(request, "Sec-WebSocket-Key");
    const char *version = ws_request_header(request, "Sec-WebSocket-Version");

    if (!header_has_token(request, "Upgrade", "websocket"))
        set_refusal(refusal, 400, "not a WebSocket request (no \"Upgrade: websocket\" header)");
    else if (strcmp(request->method, "GET") != 0)
        set_refusal(refusal, 400, "a WebSocket handshake must use GET");
    else if (!is_http_1_1_or_later(request->version))
        set_refusal(refusal, 400, "a WebSocket handshake needs HTTP/1.1 or later");
    else if (ws_request_header(request, "Host") == NULL)
        set_refusal(refusal, 400, "missing Host header");
    else if (!header_has_token(request, "Connection", "Upgrade"))
        set_refusal(refusal, 400, "the Connection header must contain \"Upgrade\"");
    else if (key == NULL || count_headers(request, "Sec-WebSocket-Key") != 1 || !is_valid_key(key))
        set_refusal(refusal, 400, "Sec-WebSocket-Key must be one base64-encoded 16-byte value");
    else if (version == NULL || count_headers(request, "Sec-WebSocket-Version") != 1)
        set_refusal(refusal, 400, "Sec-WebSocket-Version must be sent once");
    else if (strcmp(version, "13") != 0)
        set_refusal(refusal, 426, "unsupported WebSocket version: this server speaks version 13");
    else
        return true;
    return false;
}

/* OpenSSL 3 looks an algorithm up among its providers every time a digest
 * starts with it (EVP_sha1() only names it): a search, under a lock, on every
 * handshake. Fetching SHA-1 once, for the whole server, does the search once
 * (the manual, crypto(7), "Explicit fetching"); a fetched algorithm may be shared by
 * every thread. It is kept until the process ends. */
static EVP_MD *sha1_algorithm;
static pthread_once_t sha1_fetched = PTHREAD_ONCE_INIT;

static void fetch_sha1(void)
{
    sha1_algorithm = EVP_MD_fetch(NULL, "SHA1", NULL);
}

int ws_accept_key(const char *key, char accept[29])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    pthread_once(&sha1_fetched, fetch_sha1);
    EVP_MD_CTX *sha1 = EVP_MD_CTX_new();
    bool ok = sha1_algorithm != NULL && sha1 != NULL &&
              EVP_DigestInit_ex(sha1, sha1_algorithm, NULL) == 1 &&
              EVP_DigestUpdate(sha1, key, strlen(key)) == 1 &&
              EVP_DigestUpdate(sha1, WS_GUID, strlen(WS_GUID)) == 1 &&
              EVP_DigestFinal_ex(sha1, digest, &digest_length) == 1;
    EVP_MD_CTX_free(sha1);
    if (!ok) {
        errno = ENOMEM; /* the only way SHA-1 over a few bytes fails */
        return -1;
    }
    /* 20 bytes of SHA-1 make 28 characters of base64, plus a NUL. */
    EVP_EncodeBlock((unsigned char *)accept, digest, (int)digest_length);
    return 0;
}

/* ---- permessage-deflate: the offer and the answer (RFC 7692 §5, §7.1) -- */

/* A client that wants compression offers it in Sec-WebSocket-Extensions
 * (RFC 6455 §9.1), perhaps several times with different parameters, best
 * first, and perhaps among other extensions:
 *
 *   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits,
 *                             permessage-deflate, x-webkit-other
 *
 * Each offer is a name, then parameters after ";", each a token with an
 * optional value after "=": a token, or a quoted-string ("...", with \ to
 * escape) whose content is a token. We read every header to the end, so that
 * a list that breaks this grammar anywhere is refused with 400, and take the
 * first permessage-deflate offer we can accept. */

static const char *skip_spaces(const char *at)
{
    while (*at == ' ' || *at == '\t')
        at++;
    return at;
}

/* How many characters from at form a token (RFC 9110 §5.6.2). */
static size_t token_span(const char *at)
{
    size_t length = 0;
    while (is_token(at + length, 1))
        length++;
    return length;
}

/* Reads a parameter's value at *at, a token or a quoted-string whose content
 * is a token, and moves *at past it. Copies the value, unescaped, into value
 * (cut to size - 1 bytes: no value we accept is that long). Returns false
 * when there is no such value at *at. */
static bool read_param_value(const char **at, char *value, size_t size)
{
    const char *p = *at;
    bool quoted = *p == '"';
    size_t length = 0;
    for (p += quoted;; p++) {
        if (quoted && *p == '"') {
            p++;
            break;
        }
        if (quoted && *p == '\\')
            p++; /* a quoted-pair: the next character stands for itself */
        if (!is_token(p, 1)) {
            if (quoted)
                return false; /* not a token inside, or no closing quote */
            break;
        }
        if (length + 1 < size)
            value[length] = *p;
        length++;
    }
    value[length + 1 < size ? length : size - 1] = '\0';
    *at = p;
    return length > 0;
}

/* One permessage-deflate offer as we read it: which of its four parameters
 * it had, and the window sizes it named (RFC 7692 §7.1). */
enum deflate_param {
    SERVER_NO_CONTEXT_TAKEOVER,
    CLIENT_NO_CONTEXT_TAKEOVER,
    SERVER_MAX_WINDOW_BITS,
    CLIENT_MAX_WINDOW_BITS,
    DEFLATE_PARAM_COUNT,
};

static const char *const DEFLATE_PARAM_NAMES[DEFLATE_PARAM_COUNT] = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
};

struct deflate_offer {
    bool has[DEFLATE_PARAM_COUNT];
    uint8_t server_bits;
    uint8_t client_bits;
};

/* A window size, "8" to "15" with no leading zero (RFC 7692 §7.1.2.1), as a
 * number; 0 for anything else. */
static uint8_t window_bits(const char *value)
{
    if (strcmp(value, "8") == 0 || strcmp(value, "9") == 0)
        return (uint8_t)(value[0] - '0');
    bool two_digits = value[0] == '1' && value[1] >= '0' && value[1] <= '5' && value[2] == '\0';
    return two_digits ? (uint8_t)(10 + value[1] - '0') : 0;
}

/* Takes one parameter (value NULL if it had none) into *offer. Returns
 * false when it makes us decline the offer (RFC 7692 §5.1): a parameter we
 * do not know or have seen already, or a value it may not have. */
static bool take_deflate_param(struct deflate_offer *offer, const char *name, size_t name_length,
                               const char *value)
{
    int which = 0;
    while (which < DEFLATE_PARAM_COUNT &&
           (strlen(DEFLATE_PARAM_NAMES[which]) != name_length ||
            strncmp(DEFLATE_PARAM_NAMES[which], name, name_length) != 0))
        which++;
    if (which == DEFLATE_PARAM_COUNT || offer->has[which])
        return false;
    offer->has[which] = true;
    switch (which) {
    case SERVER_MAX_WINDOW_BITS:
        /* §7.1.2.1: a value is required. We decline 8 too: zlib cannot
         * deflate with a 256-byte window, and silently uses 512 bytes
         * instead (zlib.h, deflateInit2), which would break the limit the
         * client asked for. */
        offer->server_bits = value != NULL ? window_bits(value) : 0;
        return offer->server_bits >= 9;
    case CLIENT_MAX_WINDOW_BITS:
        /* §7.1.2.2: without a value, the client only says it can obey one. */
        offer->client_bits = value != NULL ? window_bits(value) : DEFLATE_LARGEST_WINDOW_BITS;
        return offer->client_bits != 0;
    default: return value == NULL; /* the no_context_takeover parameters have no value */
    }
}

/* Reads one extension of a list at *at (RFC 6455 §9.1), up to the "," that
 * ends it or the end of the list, where it leaves *at. Returns 1 for a
 * permessage-deflate offer we accept (in *offer), 0 for another extension or
 * an offer we decline, -1 when it breaks the grammar. */
static int read_extension(const char **at, struct deflate_offer *offer)
{
    const char *p = skip_spaces(*at);
    size_t name_length = token_span(p);
    if (name_length == 0)
        return -1;
    bool acceptable = name_length == 18 && strncmp(p, "permessage-deflate", 18) == 0;
    memset(offer, 0, sizeof *offer);
    for (p = skip_spaces(p + name_length); *p == ';';) {
        const char *name = skip_spaces(p + 1);
        size_t length = token_span(name);
        if (length == 0)
            return -1;
        p = skip_spaces(name + length);
        char value[4];
        bool has_value = *p == '=';
        if (has_value) {
            p = skip_spaces(p + 1);
            if (!read_param_value(&p, value, sizeof value))
                return -1;
            p = skip_spaces(p);
        }
        acceptable =
            acceptable && take_deflate_param(offer, name, length, has_value ? value : NULL);
    }
    if (*p != ',' && *p != '\0')
        return -1;
    *at = p;
    return acceptable ? 1 : 0;
}

/* Reads a whole extension list (one header's value), and keeps the first
 * acceptable offer in *first unless *found says one was kept already.
 * Empty elements are skipped (RFC 9110 §5.6.1). Returns 0, or -1 when the
 * list breaks the grammar. */
static int read_extension_list(const char *list, struct deflate_offer *first, bool *found)
{
    for (const char *p = skip_spaces(list); *p != '\0'; p = skip_spaces(p)) {
        if (*p == ',') {
            p++;
            continue;
        }
        struct deflate_offer offer;
        int acceptable = read_extension(&p, &offer);
        if (acceptable < 0)
            return -1;
        if (acceptable > 0 && !*found) {
            *first = offer;
            *found = true;
        }
    }
    return 0;
}

static uint8_t smaller(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

int ws_negotiate_deflate(const struct ws_request *request, struct ws_deflate_params *params,
                         struct ws_refusal *refusal)
{
    struct deflate_offer offer;
    bool found = false;
    for (size_t i = 0; i < request->header_count; i++) {
        if (strcasecmp(request->headers[i].name, "Sec-WebSocket-Extensions") == 0 &&
            read_extension_list(request->headers[i].value, &offer, &found) != 0) {
            set_refusal(refusal, 400, "Sec-WebSocket-Extensions is not a list of extensions");
            return -1;
        }
    }
    if (!found)
        return 0;
    /* RFC 7692 §7.1: our answer. We deflate with at most our own window,
     * and name it when the client asked for a limit; we ask the client for
     * at most ours too when it said it can obey such a limit, and inflate
     * with whatever window it may then use. */
    uint8_t server_bits =
        offer.has[SERVER_MAX_WINDOW_BITS] ? offer.server_bits : DEFLATE_LARGEST_WINDOW_BITS;
    uint8_t client_bits =
        offer.has[CLIENT_MAX_WINDOW_BITS] ? offer.client_bits : DEFLATE_LARGEST_WINDOW_BITS;
    *params = (struct ws_deflate_params){
        .server_window_bits = smaller(server_bits, DEFLATE_MAX_WINDOW_BITS),
        .client_window_bits = offer.has[CLIENT_MAX_WINDOW_BITS]
                                  ? smaller(client_bits, DEFLATE_MAX_WINDOW_BITS)
                                  : client_bits,
        .server_no_context_takeover = offer.has[SERVER_NO_CONTEXT_TAKEOVER],
        .client_no_context_takeover = offer.has[CLIENT_NO_CONTEXT_TAKEOVER],
        .name_server_window_bits = offer.has[SERVER_MAX_WINDOW_BITS],
        .name_client_window_bits = offer.has[CLIENT_MAX_WINDOW_BITS],
    };
    return 1;
}

void ws_format_deflate_response(const struct ws_deflate_params *params,
                                char out[WS_MAX_DEFLATE_RESPONSE])
{
    char server_bits[32] = "";
    char client_bits[32] = "";
    if (params->name_server_window_bits)
        snprintf(server_bits, sizeof server_bits, "; server_max_window_bits=%u",
                 (unsigned)params->server_window_bits);
    if (params->name_client_window_bits)
        snprintf(client_bits, sizeof client_bits, "; client_max_window_bits=%u",
                 (unsigned)params->client_window_bits);
    snprintf(out, WS_MAX_DEFLATE_RESPONSE, "permessage-deflate%s%s%s%s",
             params->server_no_context_takeover ? "; server_no_context_takeover" : "",
             params->client_no_context_takeover ? "; client_no_context_takeover" : "", server_bits,
             client_bits);
}

/* ==== 5. Frames (RFC 6455 §5.2) ========================================= */

/* A frame header, bit by bit (RFC 6455 §5.2):
 *
 *   byte 0:  FIN | RSV1 | RSV2 | RSV3 | opcode (4 bits)
 *   byte 1:  MASK | payload length (7 bits)
 *   then:    2 or 8 more bytes of length, if those 7 bits say 126 or 127
 *   then:    4 bytes of masking key, if MASK is set
 */
int ws_decode_frame_header(const uint8_t *bytes, size_t available, struct ws_frame_header *header)
{
    if (available < 2)
        return 0;
    header->fin = (bytes[0] & 0x80) != 0;
    header->rsv = (bytes[0] >> 4) & 0x07;
    header->opcode = (enum ws_opcode)(bytes[0] & 0x0F);
    header->masked = (bytes[1] & 0x80) != 0;

    uint8_t length7 = bytes[1] & 0x7F;
    size_t length_bytes = length7 == 127 ? 8 : length7 == 126 ? 2 : 0;
    size_t size = 2 + length_bytes + (header->masked ? 4 : 0);
    if (available < size)
        return 0;

    /* Extended lengths are in network byte order: most significant byte first. */
    header->payload_length = length7;
    if (length_bytes > 0) {
        header->payload_length = 0;
        for (size_t i = 0; i < length_bytes; i++)
            header->payload_length = (header->payload_length << 8) | bytes[2 + i];
    }
    /* "the most significant bit MUST be 0" */
    if (header->payload_length >> 63)
        return -1;
    if (header->masked)
        memcpy(header->mask_key, bytes + 2 + length_bytes, 4);
    return (int)size;
}

size_t ws_encode_frame_header(const struct ws_frame_header *header,
                              uint8_t out[WS_MAX_FRAME_HEADER])
{
    size_t size = 2;
    out[0] =
        (uint8_t)((header->fin ? 0x80 : 0) | (header->rsv & 0x07) << 4 | (header->opcode & 0x0F));
    uint8_t mask_bit = header->masked ? 0x80 : 0;
    uint64_t length = header->payload_length;

    /* The shortest form that fits (RFC 6455 §5.2: "the minimal number of
     * bytes MUST be used to encode the length"). */
    if (length <= 125) {
        out[1] = mask_bit | (uint8_t)length;
    } else if (length <= 0xFFFF) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(length >> 8);
        out[3] = (uint8_t)length;
        size = 4;
    } else {
        out[1] = mask_bit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(length >> (56 - 8 * i));
        size = 10;
    }
    if (header->masked) {
        memcpy(out + size, header->mask_key, 4);
        size += 4;
    }
    return size;
}

void ws_mask(uint8_t *bytes, size_t len, const uint8_t key[4], uint64_t offset)
{
    /* RFC 6455 §5.3: byte i of the payload is XORed with key[i % 4]. We do
     * eight bytes at a time, which makes large messages about a seventh
     * faster (tutorial, "Measuring it"): the key, starting at the right byte and
     * repeated twice, is one 64-bit word. memcpy() moves the bytes in and out of
     * words whatever their alignment; compilers turn it into plain loads. */
    uint8_t repeated[8];
    for (size_t k = 0; k < 8; k++)
        repeated[k] = key[(offset + k) % 4];
    uint64_t key8;
    memcpy(&key8, repeated, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, bytes + i, 8);
        word ^= key8;
        memcpy(bytes + i, &word, 8);
    }
    for (; i < len; i++) /* the last few bytes, one at a time */
        bytes[i] ^= key[(offset + i) % 4];
}

/* ---- Describing a frame (--trace) ------------------------------------- */

static const char *opcode_name(enum ws_opcode opcode)
{
    switch (opcode) {
    case WS_OPCODE_CONTINUATION: return "continuation";
    case WS_OPCODE_TEXT: return "text";
    case WS_OPCODE_BINARY: return "binary";
    case WS_OPCODE_CLOSE: return "close";
    case WS_OPCODE_PING: return "ping";
    case WS_OPCODE_PONG: return "pong";
    default: return "reserved";
    }
}

size_t ws_escape(const uint8_t *bytes, size_t length, char *out, size_t size)
{
    size_t used = 0;
    size_t i = 0;
    for (; i < length && used + 5 <= size; i++) {
        if (bytes[i] >= 0x20 && bytes[i] < 0x7F && bytes[i] != '"' && bytes[i] != '\\')
            out[used++] = (char)bytes[i];
        else
            used += (size_t)snprintf(out + used, size - used, "\\x%02x", bytes[i]);
    }
    if (size > 0)
        out[used < size ? used : size - 1] = '\0';
    return i;
}

/* The first bytes of a payload, quoted and escaped (so UTF-8 shows its
 * bytes), and "..." when there are more. */
static void describe_text(const uint8_t *text, size_t available, uint64_t total, char *out,
                          size_t size)
{
    char escaped[4 * 40 + 1];
    ws_escape(text, available < 40 ? available : 40, escaped, sizeof escaped);
    snprintf(out, size, "\"%s\"%s", escaped, total > 40 ? "..." : "");
}

/* The first bytes of a payload in hex, and "..." when there are more. */
static void describe_bytes(const uint8_t *bytes, size_t available, uint64_t total, char *out,
                           size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < available && i < 16 && used + 4 < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%02x", i > 0 ? " " : "", bytes[i]);
    if (total > 16 && used + 4 < size)
        snprintf(out + used, size - used, " ...");
}

void ws_describe_frame(const struct ws_frame_header *header, size_t header_size,
                       const uint8_t *payload, size_t available, bool text, char *out, size_t size)
{
    /* RFC 6455 §5.2: the header is 2 bytes, then 0, 2 or 8 of length, then
     * 4 of mask. What is left after the mask tells the length form. */
    size_t length_bytes = header_size - 2 - (header->masked ? 4 : 0);
    const char *form = length_bytes == 0   ? "7-bit"
                       : length_bytes == 2 ? "16-bit, 126"
                                           : "64-bit, 127";
    char key[16] = "";
    if (header->masked)
        snprintf(key, sizeof key, " key=%02x%02x%02x%02x", header->mask_key[0], header->mask_key[1],
                 header->mask_key[2], header->mask_key[3]);
    char shown[256] = "";
    uint64_t total = header->payload_length;
    if (header->opcode == WS_OPCODE_CLOSE && available >= 2) {
        int used =
            snprintf(shown, sizeof shown, "code=%u ", (unsigned)(payload[0] << 8 | payload[1]));
        describe_text(payload + 2, available - 2, total - 2, shown + used,
                      sizeof shown - (size_t)used);
    } else if (available > 0 && text) {
        describe_text(payload, available, total, shown, sizeof shown);
    } else if (available > 0) {
        describe_bytes(payload, available, total, shown, sizeof shown);
    }
    /* RFC 7692 §6: RSV1 on the first frame of a message says "compressed". */
    bool compressed = (header->rsv & WS_RSV1) != 0 &&
                      (header->opcode == WS_OPCODE_TEXT || header->opcode == WS_OPCODE_BINARY);
    snprintf(out, size, "FIN=%d RSV=%d%d%d opcode=%X (%s%s) MASK=%d%s length=%llu (%s)%s%s",
             header->fin, header->rsv >> 2 & 1, header->rsv >> 1 & 1, header->rsv & 1,
             (unsigned)header->opcode, opcode_name(header->opcode),
             compressed ? ", compressed" : "", header->masked, key, (unsigned long long)total, form,
             shown[0] ? " " : "", shown);
}

/* ==== 6. A connection: receive, send, close ============================= */

/* ---- Compression: each connection's zlib streams (RFC 7692 §7.2) ------- */

/* RFC 7692 §7.2.1: a compressed message is DEFLATE data (RFC 1951) ended by
 * a "sync flush", which always ends with these 4 bytes. The sender removes
 * them; the receiver appends them again before inflating. */
static const uint8_t DEFLATE_TRAILER[4] = {0x00, 0x00, 0xff, 0xff};

/* What a connection that agreed to permessage-deflate holds: one stream to
 * inflate what it receives and one to deflate what it sends, each started
 * the first time it is needed, and the buffer deflate() writes into. */
struct compression {
    z_stream inflater;
    z_stream deflater;
    uint8_t *out; /* DEFLATE_BUFFER_SIZE bytes, made with the deflater */
    size_t out_used;
    /* Receiving: zlib may leave input unused, so how many bytes after
     * inbox[in_start] are unmasked already (fewer than WS_INBOX_SIZE); how
     * much of DEFLATE_TRAILER has been inflated; whether the current frame
     * has been traced. (No padding here either.) */
    uint32_t unmasked_ahead;
    uint8_t trailer_used;
    bool frame_traced;
    bool inflater_ready;
    bool deflater_ready;
};

/* The connection's compression state, made the first time it is needed, or
 * NULL when there is no memory for it. */
static struct compression *get_compression(struct ws *ws)
{
    if (ws->compression == NULL)
        ws->compression = calloc(1, sizeof *ws->compression);
    return ws->compression;
}

/* The stream that inflates received messages, started on first use. The
 * negative window bits ask zlib for raw DEFLATE, without the zlib header
 * RFC 7692 leaves out. A client told to use 8 bits that deflates with zlib
 * uses 9 anyway (see take_deflate_param()): a larger window inflates
 * anything a smaller one made, so we never inflate with less than 9. */
static z_stream *get_inflater(struct ws *ws)
{
    struct compression *compression = get_compression(ws);
    if (compression == NULL)
        return NULL;
    if (!compression->inflater_ready) {
        int bits = ws->deflate.client_window_bits < 9 ? 9 : ws->deflate.client_window_bits;
        if (inflateInit2(&compression->inflater, -bits) != Z_OK)
            return NULL;
        compression->inflater_ready = true;
    }
    return &compression->inflater;
}

/* The stream that deflates the messages we send, and its output buffer,
 * started on first use with our window and memory level. */
static z_stream *get_deflater(struct ws *ws)
{
    struct compression *compression = get_compression(ws);
    if (compression == NULL)
        return NULL;
    if (!compression->deflater_ready) {
        compression->out = malloc(DEFLATE_BUFFER_SIZE);
        if (compression->out == NULL ||
            deflateInit2(&compression->deflater, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                         -ws->deflate.server_window_bits, DEFLATE_MEM_LEVEL,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            free(compression->out);
            compression->out = NULL;
            return NULL;
        }
        compression->deflater_ready = true;
    }
    return &compression->deflater;
}

static void free_compression(struct compression *compression)
{
    if (compression == NULL)
        return;
    if (compression->inflater_ready)
        inflateEnd(&compression->inflater);
    if (compression->deflater_ready)
        deflateEnd(&compression->deflater);
    free(compression->out);
    free(compression);
}

/* The handshake's part in compression: with --permessage-deflate, takes the
 * client's first acceptable offer and writes the header line that accepts it
 * into line ("" when there was none). Returns 1 when compression is agreed,
 * 0 when not, or -1 with *refusal (400) and errno EINVAL for a malformed
 * Sec-WebSocket-Extensions. */
static int agree_on_compression(const struct ws_request *request,
                                const struct ws_settings *settings,
                                struct ws_deflate_params *params, char *line, size_t size,
                                struct ws_refusal *refusal)
{
    line[0] = '\0';
    if (!settings->permessage_deflate)
        return 0; /* Sec-WebSocket-Extensions is then ignored, as before */
    int agreed = ws_negotiate_deflate(request, params, refusal);
    if (agreed < 0)
        errno = EINVAL;
    if (agreed > 0) {
        char value[WS_MAX_DEFLATE_RESPONSE];
        ws_format_deflate_response(params, value);
        snprintf(line, size, "Sec-WebSocket-Extensions: %s\r\n", value);
    }
    return agreed;
}

/* The closing handshake (RFC 6455 §7) moves a connection from OPEN through
 * CLOSE_SENT or CLOSE_RECEIVED to CLOSED; any failure makes it ABORTED. */
static bool close_was_sent(const struct ws *ws)
{
    return ws->state == WS_STATE_CLOSE_SENT || ws->state == WS_STATE_CLOSED;
}

static bool close_was_received(const struct ws *ws)
{
    return ws->state == WS_STATE_CLOSE_RECEIVED || ws->state == WS_STATE_CLOSED;
}

/* --trace: each line of an HTTP header block (lines end in CRLF, and a
 * blank line ends the block), after prefix. */
static void trace_lines(const struct ws *ws, const char *prefix, const char *text)
{
    const char *end;
    while (ws->settings.trace != NULL && (end = strstr(text, "\r\n")) != NULL && end != text) {
        char line[256];
        snprintf(line, sizeof line, "%s%.*s", prefix, (int)(end - text), text);
        ws->settings.trace(ws->settings.trace_context, line);
        text = end + 2;
    }
}

/* Sets the socket options every connection needs. Nagle's algorithm holds
 * back a small write until the previous one is acknowledged, to gather bytes
 * into fewer packets; we always send whole frames, each in one call, so
 * holding them back only adds delay (TCP_NODELAY). (Frames that we know
 * come together, we send together on purpose: see send_frame().) It is only an
 * optimisation, and a socket that is not TCP (the tests' socketpairs) has no
 * such option, so its result is not checked. A peer that reads nothing for
 * two keep-alive intervals makes a send fail (SO_SNDTIMEO) rather than hold
 * our thread forever: that one must work. Returns 0, or -1. */
static int set_connection_options(struct ws_transport *transport,
                                  const struct ws_settings *settings)
{
    int on = 1;
    (void)setsockopt(transport->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    if (settings->ping_interval_seconds == 0)
        return 0;
    /* Over TLS the socket does not block, and send_tls() waits with poll()
     * for this long instead. */
    transport->send_timeout_milliseconds = 2 * 1000 * settings->ping_interval_seconds;
    struct timeval timeout = {.tv_sec = (time_t)2 * settings->ping_interval_seconds};
    return setsockopt(transport->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

struct ws *ws_accept(struct ws_transport *transport, const struct ws_request *request,
                     const struct ws_settings *settings, struct ws_refusal *refusal)
{
    set_refusal(refusal, 0, "the connection failed during the handshake");
    struct ws_deflate_params deflate = {0};
    char extensions[WS_MAX_DEFLATE_RESPONSE + 32];
    int agreed =
        agree_on_compression(request, settings, &deflate, extensions, sizeof extensions, refusal);
    if (agreed < 0)
        return NULL;
    char accept[29];
    if (ws_accept_key(ws_request_header(request, "Sec-WebSocket-Key"), accept) != 0 ||
        set_connection_options(transport, settings) != 0)
        return NULL;
    char response[384];
    int length = snprintf(response, sizeof response,
                          "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\n"
                          "%s"
                          "\r\n",
                          accept, extensions);
    struct ws *ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        return NULL;
    ws->transport = *transport;
    ws->settings = *settings;
    ws->state = WS_STATE_OPEN;
    ws->sent_close_status = WS_CLOSE_ABNORMAL_CLOSURE; /* until we send one */
    ws->deflate_agreed = agreed > 0;
    ws->deflate = deflate;
    ws->last_heard = now_milliseconds();
    ws->bytes_received = request->length;
    ws->bytes_sent = (uint64_t)length;
    /* Frames the client sent right behind its request are already read. */
    ws->in_end = request->length - request->header_length;
    if (ws->in_end > 0) {
        ws->inbox = malloc(WS_INBOX_SIZE);
        if (ws->inbox == NULL) {
            free(ws);
            return NULL;
        }
        memcpy(ws->inbox, request->data + request->header_length, ws->in_end);
    }

    trace_lines(ws, ">> ", response);
    if (send_bytes(transport, response, (size_t)length) != 0) {
        free(ws);
        return NULL;
    }
    return ws;
}

void ws_free(struct ws *ws)
{
    free_compression(ws->compression);
    free(ws->inbox);
    free(ws);
}

void ws_thread_done(void)
{
    OPENSSL_thread_stop();
}

enum ws_state ws_get_state(const struct ws *ws)
{
    return ws->state;
}

void ws_get_stats(const struct ws *ws, struct ws_stats *stats)
{
    stats->bytes_received = ws->bytes_received;
    stats->bytes_sent = ws->bytes_sent;
    stats->close_status = ws->sent_close_status;
}

/* ---- Sending ----------------------------------------------------------- */

/* --trace: one line for a frame, received ("<<") or sent (">>"). */
static void trace_frame(const struct ws *ws, const char *direction,
                        const struct ws_frame_header *header, size_t header_size,
                        const uint8_t *payload, size_t available, bool text)
{
    if (ws->settings.trace == NULL)
        return;
    char description[384];
    ws_describe_frame(header, header_size, payload, available, text, description,
                      sizeof description);
    char line[400];
    snprintf(line, sizeof line, "%s %s", direction, description);
    ws->settings.trace(ws->settings.trace_context, line);
}

/* RFC 7692 §6.1: once permessage-deflate is agreed we compress every message
 * we send, and say so with RSV1 on its first frame (and only there). */
static bool starts_compressed_message(const struct ws *ws, enum ws_opcode opcode)
{
    return ws->deflate_agreed && (opcode == WS_OPCODE_TEXT || opcode == WS_OPCODE_BINARY);
}

/* Sends one unmasked frame (RFC 6455 §5.1: a server never masks), header and
 * payload in a single sendmsg() call. A frame that could not be sent whole
 * leaves the peer in the middle of a frame: the connection has failed.
 *
 * A frame that does not end its message goes with MSG_MORE: the kernel may
 * hold it back and send it with the next frame in one TCP segment, as it
 * usually comes at once (the notifier echoes a large message 2 KiB at a time).
 * When it does not, push_held_frames() sends it before we wait. */
static int send_frame(struct ws *ws, bool fin, enum ws_opcode opcode, const void *payload,
                      size_t length)
{
    struct ws_frame_header header = {.fin = fin,
                                     .rsv = starts_compressed_message(ws, opcode) ? WS_RSV1 : 0,
                                     .opcode = opcode,
                                     .payload_length = length};
    uint8_t header_bytes[WS_MAX_FRAME_HEADER];
    struct iovec iov[2] = {
        {.iov_base = header_bytes, .iov_len = ws_encode_frame_header(&header, header_bytes)},
        {.iov_base = (void *)payload, .iov_len = length},
    };
    /* --trace shows a compressed payload as bytes: as text it means nothing. */
    bool text = !ws->deflate_agreed && (opcode == WS_OPCODE_TEXT ||
                                        (opcode == WS_OPCODE_CONTINUATION && ws->sending_text));
    trace_frame(ws, ">>", &header, iov[0].iov_len, payload, length, text);
    size_t total = iov[0].iov_len + length;
    if (send_all(&ws->transport, iov, length > 0 ? 2 : 1, fin ? 0 : MSG_MORE) != 0) {
        ws->state = WS_STATE_ABORTED;
        return -1;
    }
    ws->bytes_sent += total;
    return 0;
}

/* RFC 6455 §5.5.1: a close frame's payload is an optional 2-byte status code
 * followed by an optional UTF-8 reason. 1005 means "no status": we send an
 * empty close frame, as .NET does. */
static int send_close_frame(struct ws *ws, enum ws_close_status status, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t length = 0;
    if (status != WS_CLOSE_NO_STATUS_RECEIVED) {
        size_t reason_length = reason != NULL ? strnlen(reason, WS_MAX_CLOSE_REASON + 1) : 0;
        if (!ws_is_valid_close_status(status) || reason_length > WS_MAX_CLOSE_REASON) {
            errno = EINVAL;
            return -1;
        }
        payload[0] = (uint8_t)(status >> 8); /* network byte order */
        payload[1] = (uint8_t)status;
        if (reason_length > 0)
            memcpy(payload + 2, reason, reason_length);
        length = 2 + reason_length;
    }
    ws->state = ws->state == WS_STATE_CLOSE_RECEIVED ? WS_STATE_CLOSED : WS_STATE_CLOSE_SENT;
    ws->sent_close_status = status;
    return send_frame(ws, true, WS_OPCODE_CLOSE, payload, length);
}

/* ---- Sending compressed (RFC 7692 §7.2.1) ---- */

/* Sends the first count bytes of the deflate buffer as the next frame of the
 * message (the first one says text or binary, the others continuation), and
 * keeps the rest of the buffer for later. */
static int send_deflated(struct ws *ws, struct compression *compression, size_t count, bool fin)
{
    enum ws_opcode opcode = ws->sending_message ? WS_OPCODE_CONTINUATION
                            : ws->sending_text  ? WS_OPCODE_TEXT
                                                : WS_OPCODE_BINARY;
    ws->sending_message = !fin;
    if (send_frame(ws, fin, opcode, compression->out, count) != 0)
        return -1;
    compression->out_used -= count;
    memmove(compression->out, compression->out + count, compression->out_used);
    return 0;
}

/* Runs deflate() until it has taken all its input and, with Z_SYNC_FLUSH,
 * written out everything it holds. Each time the buffer fills, it goes out
 * as a frame, but for its last 4 bytes: they may be the start of the trailer
 * that send_compressed() must remove, which can straddle two fillings. */
static int deflate_input(struct ws *ws, struct compression *compression, int flush)
{
    z_stream *deflater = &compression->deflater;
    for (;;) {
        deflater->next_out = compression->out + compression->out_used;
        deflater->avail_out = (uInt)(DEFLATE_BUFFER_SIZE - compression->out_used);
        deflate(deflater, flush); /* Z_OK, or Z_BUF_ERROR: nothing to do; never worse */
        compression->out_used = DEFLATE_BUFFER_SIZE - deflater->avail_out;
        if (deflater->avail_out > 0)
            return 0; /* room left over: zlib has done all it can */
        if (send_deflated(ws, compression, compression->out_used - sizeof DEFLATE_TRAILER, false) !=
            0)
            return -1;
    }
}

/* ws_send() once permessage-deflate is agreed: the chunk goes through the
 * deflater. A chunk that does not end the message is deflated with
 * Z_NO_FLUSH, so zlib may keep it to compress it better with what follows,
 * and a frame goes out only when the buffer fills. The last chunk is flushed
 * with Z_SYNC_FLUSH, whose output ends with DEFLATE_TRAILER, which we remove
 * (RFC 7692 §7.2.1); its frame ends the message. One case gives no output at
 * all: an empty message right after another message, since zlib will not
 * flush twice with nothing in between. Its payload is then the single byte
 * 0x00, an empty block once the trailer is appended (RFC 7692 §7.2.3.6). */
static int send_compressed(struct ws *ws, const uint8_t *buf, size_t len, bool end_of_message)
{
    z_stream *deflater = get_deflater(ws);
    if (deflater == NULL) {
        send_close_frame(ws, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        ws->state = WS_STATE_ABORTED;
        errno = ENOMEM;
        return -1;
    }
    struct compression *compression = ws->compression;
    do { /* zlib counts in uInt, perhaps narrower than size_t */
        uInt chunk = len > UINT_MAX ? UINT_MAX : (uInt)len;
        deflater->next_in = buf;
        deflater->avail_in = chunk;
        buf += chunk;
        len -= chunk;
        if (deflate_input(ws, compression,
                          end_of_message && len == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH) != 0)
            return -1;
    } while (len > 0);
    if (!end_of_message)
        return 0; /* what did not fill the buffer waits there for the rest */
    size_t held_back = sizeof DEFLATE_TRAILER;
    uint8_t *end = compression->out + compression->out_used;
    if (compression->out_used >= held_back &&
        memcmp(end - held_back, DEFLATE_TRAILER, held_back) == 0)
        compression->out_used -= held_back;
    else /* nothing was flushed: see below */
        compression->out[compression->out_used++] = 0x00;
    if (send_deflated(ws, compression, compression->out_used, true) != 0)
        return -1;
    /* server_no_context_takeover: the next message starts with an empty
     * window, so the client may forget this one (RFC 7692 §7.1.1.1). */
    if (ws->deflate.server_no_context_takeover)
        deflateReset(deflater);
    return 0;
}

int ws_send(struct ws *ws, const void *buf, size_t len, enum ws_message_type type,
            bool end_of_message)
{
    /* Like .NET's SendAsync: data may be sent while the connection is OPEN,
     * and after the peer's close frame, but not after our own. */
    if (type == WS_MESSAGE_CLOSE || ws->state == WS_STATE_ABORTED || close_was_sent(ws)) {
        errno = type == WS_MESSAGE_CLOSE        ? EINVAL
                : ws->state == WS_STATE_ABORTED ? ECONNABORTED
                                                : EPIPE;
        return -1;
    }
    /* RFC 6455 §5.4: only the first frame of a message says text or binary;
     * the frames that continue it say "continuation". */
    enum ws_opcode opcode = ws->sending_message       ? WS_OPCODE_CONTINUATION
                            : type == WS_MESSAGE_TEXT ? WS_OPCODE_TEXT
                                                      : WS_OPCODE_BINARY;
    ws->sending_text = type == WS_MESSAGE_TEXT;
    if (ws->deflate_agreed)
        return send_compressed(ws, buf, len, end_of_message);
    ws->sending_message = !end_of_message;
    return send_frame(ws, end_of_message, opcode, buf, len);
}

/* RFC 6455 §7.1.7, "Fail the WebSocket Connection": tell the peer why with a
 * close frame, if we have not sent one yet, and end the connection without
 * waiting for its answer. Always returns -1, so callers can write
 * "return fail_connection(...)". */
static int fail_connection(struct ws *ws, enum ws_close_status status, const char *why)
{
    if (!close_was_sent(ws))
        send_close_frame(ws, status, why);
    ws->state = WS_STATE_ABORTED;
    end_tcp_connection(&ws->transport);
    errno = EPROTO;
    return -1;
}

/* ---- Waiting: for bytes, for timers, for the stop signal --------------- */

/* When the connection's next timer fires, or 0 for "no timer". While we wait
 * for the peer's close frame, that is the close deadline. Otherwise it is the
 * keep-alive: one interval after the last byte we heard, we ping; one
 * interval after the ping, if no byte came since, the peer is gone. */
static int64_t next_deadline(const struct ws *ws)
{
    if (ws->close_deadline > 0)
        return ws->close_deadline;
    int64_t interval = ws->settings.ping_interval_seconds * 1000LL;
    if (interval == 0)
        return 0;
    return (ws->ping_sent_at > 0 ? ws->ping_sent_at : ws->last_heard) + interval;
}

/* The deadline from next_deadline() has passed: act on it. */
static int handle_deadline(struct ws *ws)
{
    if (ws->close_deadline > 0) {
        ws->state = WS_STATE_ABORTED; /* the peer never answered our close frame */
        errno = ETIMEDOUT;
        return -1;
    }
    if (ws->ping_sent_at > 0)
        return fail_connection(ws, WS_CLOSE_GOING_AWAY, "no answer to ping");
    ws->ping_sent_at = now_milliseconds();
    ws->pong_awaited_since = ws->ping_sent_at;
    return send_frame(ws, true, WS_OPCODE_PING, NULL, 0); /* RFC 6455 §5.5.2 */
}

/* In the middle of a message we send, its last frame went with MSG_MORE and
 * may still be held in the kernel, waiting for the next one; and the client
 * may be waiting for it before it sends more. So before we wait, we push it
 * out: setting TCP_NODELAY sends whatever is held (tcp(7)), even when it is
 * set already, as it is here (chapter "Ten thousand at once" tests it). */
static void push_held_frames(const struct ws *ws)
{
    int on = 1;
    if (ws->sending_message && ws->transport.tls == NULL)
        (void)setsockopt(ws->transport.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

/* Waits until the socket has something for recv() (bytes, or the error or
 * end of stream it will report) or the stop signal comes, acting on timers
 * on the way: the one place where a connection's thread sleeps. Returns 0,
 * or -1 when a timer failed the connection. */
static int wait_for_bytes(struct ws *ws)
{
    push_held_frames(ws);
    if (has_buffered_bytes(&ws->transport))
        return 0; /* TLS has them already: the socket may have nothing more */
    for (;;) {
        bool watch_stop = ws->settings.stop_fd >= 0 && !ws->stop_requested;
        struct pollfd fds[2] = {{.fd = ws->transport.fd, .events = POLLIN},
                                {.fd = ws->settings.stop_fd, .events = POLLIN}};
        int ready = poll(fds, watch_stop ? 2 : 1, milliseconds_until(next_deadline(ws)));
        if (ready < 0 && errno != EINTR) {
            ws->state = WS_STATE_ABORTED;
            return -1;
        }
        if (ready == 0 && handle_deadline(ws) != 0)
            return -1;
        if (ready > 0 && watch_stop && fds[1].revents != 0)
            ws->stop_requested = true; /* the server is shutting down */
        if (ready > 0)
            return 0;
    }
}

/* ---- Receiving --------------------------------------------------------- */

static bool inbox_is_empty(const struct ws *ws)
{
    return ws->in_start == ws->in_end;
}

/* An idle connection needs no inbox: between two messages, with nothing
 * buffered, it gives its inbox back to malloc() before it waits, and takes one
 * again when bytes arrive. A thousand connections that wait hold no inbox at
 * all, instead of 8 KiB each (chapter "What a thread costs"). */
static void release_inbox(struct ws *ws)
{
    free(ws->inbox);
    ws->inbox = NULL;
    ws->in_start = 0;
    ws->in_end = 0;
}

/* Makes room at the end of the inbox, taking one first if the connection
 * gave it back: when every byte has been used it starts again at the
 * beginning; when the unread bytes sit at its very end, they move to its
 * start. Returns 0, or -1 (ENOMEM). */
static int make_room_in_inbox(struct ws *ws)
{
    if (ws->inbox == NULL && (ws->inbox = malloc(WS_INBOX_SIZE)) == NULL)
        return -1;
    if (inbox_is_empty(ws)) {
        ws->in_start = 0;
        ws->in_end = 0;
    } else if (ws->in_end == WS_INBOX_SIZE) {
        memmove(ws->inbox, ws->inbox + ws->in_start, ws->in_end - ws->in_start);
        ws->in_end -= ws->in_start;
        ws->in_start = 0;
    }
    return 0;
}

/* Moves what has arrived into the inbox, without waiting. Returns the count,
 * 0 if nothing has arrived, or -1 when the connection is gone without a
 * close frame (1006). */
static ssize_t receive_into_inbox(struct ws *ws)
{
    ssize_t received =
        make_room_in_inbox(ws) != 0
            ? -1
            : receive_available(&ws->transport, ws->inbox + ws->in_end, WS_INBOX_SIZE - ws->in_end);
    if (received < 0) {
        ws->state = WS_STATE_ABORTED;
        return -1;
    }
    if (received > 0) {
        ws->in_end += (size_t)received;
        ws->bytes_received += (size_t)received;
        ws->last_heard = now_milliseconds();
        ws->ping_sent_at = 0; /* any byte from the peer shows it is alive */
    }
    return received;
}

/* In the middle of a frame or message, the rest has usually arrived already:
 * we read first, and wait only if nothing was there. Returns 0 once at least
 * one more byte is in the inbox, or -1. */
static int receive_more(struct ws *ws)
{
    for (;;) {
        ssize_t received = receive_into_inbox(ws);
        if (received != 0)
            return received < 0 ? -1 : 0;
        if (wait_for_bytes(ws) != 0)
            return -1;
    }
}

/* Between two messages, with the inbox empty, the next message has usually
 * not arrived yet: we wait first, then read. Returns 0 once bytes are in the
 * inbox, or -1. When the server is stopping, it returns 0 with the inbox
 * still empty as soon as nothing more has arrived: every message that
 * reached us has then been read, and echoed. */
static int wait_for_next_message(struct ws *ws)
{
    release_inbox(ws);
    for (;;) {
        if (!ws->stop_requested && wait_for_bytes(ws) != 0)
            return -1;
        ssize_t received = receive_into_inbox(ws);
        if (received != 0 || ws->stop_requested)
            return received < 0 ? -1 : 0;
    }
}

/* Reads and decodes the next frame header. Returns its size in bytes, or -1. */
static int read_frame_header(struct ws *ws, struct ws_frame_header *header)
{
    for (;;) {
        size_t available = ws->in_end - ws->in_start;
        int size = available == 0
                       ? 0
                       : ws_decode_frame_header(ws->inbox + ws->in_start, available, header);
        if (size > 0) {
            ws->in_start += (size_t)size;
            return size;
        }
        if (size < 0)
            return fail_connection(ws, WS_CLOSE_PROTOCOL_ERROR, "payload length too large");
        if (receive_more(ws) != 0)
            return -1;
    }
}

/* Takes up to want payload bytes of a frame into dst and unmasks them with
 * the frame's key; offset is how many bytes of its payload came before. Uses
 * the bytes already in the inbox; only when there are none does it wait for
 * more, once. So it may return fewer than want, never zero. */
static ssize_t read_payload(struct ws *ws, const uint8_t key[4], uint64_t offset, uint8_t *dst,
                            size_t want)
{
    if (inbox_is_empty(ws) && receive_more(ws) != 0)
        return -1;
    size_t available = ws->in_end - ws->in_start;
    size_t count = available < want ? available : want;
    memcpy(dst, ws->inbox + ws->in_start, count);
    ws->in_start += count;
    ws_mask(dst, count, key, offset);
    return (ssize_t)count;
}

static bool is_control_opcode(enum ws_opcode opcode)
{
    return (opcode & 0x08) != 0; /* RFC 6455 §5.5: opcodes 0x8 to 0xF */
}

static bool is_known_opcode(enum ws_opcode opcode)
{
    switch (opcode) {
    case WS_OPCODE_CONTINUATION:
    case WS_OPCODE_TEXT:
    case WS_OPCODE_BINARY:
    case WS_OPCODE_CLOSE:
    case WS_OPCODE_PING:
    case WS_OPCODE_PONG: return true;
    default: return false;
    }
}

/* What is wrong with a frame header, as a reason for the close frame, or NULL
 * when nothing is. Every rule here is a "MUST" of RFC 6455. */
static const char *frame_header_problem(const struct ws *ws, const struct ws_frame_header *header)
{
    if (!header->masked)
        return "client frames must be masked"; /* §5.1 */
    if (is_control_opcode(header->opcode) && header->payload_length > WS_MAX_CONTROL_PAYLOAD)
        return "control frame longer than 125 bytes"; /* §5.5 */
    if (is_control_opcode(header->opcode) && !header->fin)
        return "fragmented control frame"; /* §5.5 */
    if (header->opcode == WS_OPCODE_CONTINUATION && !ws->in_message)
        return "continuation frame without a message to continue"; /* §5.4 */
    if ((header->opcode == WS_OPCODE_TEXT || header->opcode == WS_OPCODE_BINARY) && ws->in_message)
        return "new message started inside a fragmented message"; /* §5.4 */
    if (header->rsv != 0 && !ws->deflate_agreed)
        return "reserved bits set, but no extension was negotiated"; /* §5.2 */
    if ((header->rsv & ~WS_RSV1) != 0)
        return "RSV2 or RSV3 set, but no extension uses them"; /* §5.2 */
    if (header->rsv != 0 && header->opcode != WS_OPCODE_TEXT && header->opcode != WS_OPCODE_BINARY)
        return "RSV1 set on a continuation or control frame"; /* RFC 7692 §6.1 */
    if (!is_known_opcode(header->opcode))
        return "reserved opcode"; /* §5.2 */
    return NULL;
}

/* RFC 6455 §5.5.1: the peer starts (or answers) the closing handshake. */
static int receive_close_frame(struct ws *ws, const uint8_t *payload, size_t length)
{
    if (length == 1)
        return fail_connection(ws, WS_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
    enum ws_close_status status = WS_CLOSE_NO_STATUS_RECEIVED; /* §7.1.5 */
    if (length >= 2) {
        status = (enum ws_close_status)(payload[0] << 8 | payload[1]);
        if (!ws_is_valid_close_status(status))
            return fail_connection(ws, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
        struct ws_utf8 utf8 = {0};
        if (!ws_utf8_validate(&utf8, payload + 2, length - 2) || !ws_utf8_is_complete(&utf8))
            return fail_connection(ws, WS_CLOSE_INVALID_PAYLOAD_DATA,
                                   "close reason is not valid UTF-8");
        memcpy(ws->peer_close_description, payload + 2, length - 2);
    }
    ws->peer_close_description[length >= 2 ? length - 2 : 0] = '\0';
    ws->peer_close_status = status;
    ws->state = ws->state == WS_STATE_CLOSE_SENT ? WS_STATE_CLOSED : WS_STATE_CLOSE_RECEIVED;
    return 0;
}

/* Reads a whole control frame (at most 125 bytes: frame_header_problem()
 * made sure) and acts on it: a ping is answered with a pong carrying the same
 * payload (§5.5.2), a pong is ignored (§5.5.3), a close is recorded. A
 * control frame may come between the frames of a message (§5.4), so it
 * touches nothing of the message's state. */
static int handle_control_frame(struct ws *ws, const struct ws_frame_header *header,
                                size_t header_size)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t length = (size_t)header->payload_length;
    for (size_t got = 0; got < length;) {
        ssize_t count = read_payload(ws, header->mask_key, got, payload + got, length - got);
        if (count < 0)
            return -1;
        got += (size_t)count;
    }
    trace_frame(ws, "<<", header, header_size, payload, length, false);
    if (header->opcode == WS_OPCODE_CLOSE)
        return receive_close_frame(ws, payload, length);
    if (header->opcode == WS_OPCODE_PONG)
        ws->pong_awaited_since = 0;
    /* §5.5.1 forbids only data frames after our close frame; sending no
     * pong after it either is our choice: the peer is closing anyway. */
    if (header->opcode == WS_OPCODE_PING && !close_was_sent(ws))
        return send_frame(ws, true, WS_OPCODE_PONG, payload, length);
    return 0;
}

/* Reads the next frame header and checks it. A control frame is handled
 * whole, here; for a data frame, the frame (and a new message, for a text or
 * binary frame) starts, and its payload is left for deliver_payload(). */
static int next_frame(struct ws *ws)
{
    struct ws_frame_header header;
    int header_size = read_frame_header(ws, &header);
    if (header_size < 0)
        return -1;
    const char *problem = frame_header_problem(ws, &header);
    if (problem != NULL) {
        trace_frame(ws, "<<", &header, (size_t)header_size, NULL, 0, false);
        return fail_connection(ws, WS_CLOSE_PROTOCOL_ERROR, problem);
    }
    if (is_control_opcode(header.opcode))
        return handle_control_frame(ws, &header, (size_t)header_size);
    if (header.opcode != WS_OPCODE_CONTINUATION)
        ws->message_compressed = (header.rsv & WS_RSV1) != 0; /* RFC 7692 §6 */
    /* The limit applies to the whole message, so a message cannot slip past
     * it in many small frames; and it is checked on the header, before a
     * single byte of the payload is read. A compressed message's size is
     * what it inflates to, which only inflating tells: deliver_inflated()
     * counts it. */
    uint64_t size_so_far = header.opcode == WS_OPCODE_CONTINUATION ? ws->message_size : 0;
    uint64_t limit = ws->settings.max_message_size;
    if (!ws->message_compressed && limit > 0 && header.payload_length > limit - size_so_far)
        return fail_connection(ws, WS_CLOSE_MESSAGE_TOO_BIG, "message too big");
    ws->message_size = size_so_far + (ws->message_compressed ? 0 : header.payload_length);
    if (header.opcode != WS_OPCODE_CONTINUATION) {
        ws->in_message = true;
        ws->message_type = header.opcode == WS_OPCODE_TEXT ? WS_MESSAGE_TEXT : WS_MESSAGE_BINARY;
        memset(&ws->utf8, 0, sizeof ws->utf8);
    }
    ws->in_frame = true;
    ws->frame = header;
    ws->frame_header_size = header_size;
    ws->frame_bytes_read = 0;
    return 0;
}

/* What every piece of a data message goes through, compressed or not, once
 * its count bytes are in buf: the UTF-8 check, then the result. */
static int hand_over(struct ws *ws, const uint8_t *buf, size_t count, bool end_of_frame,
                     struct ws_receive_result *result)
{
    bool end_of_message = end_of_frame && ws->frame.fin;

    /* RFC 6455 §8.1: a text message must be valid UTF-8. We check each piece
     * as it arrives, so a bad byte fails the connection at once, and the whole
     * message must end on a character boundary. */
    if (ws->message_type == WS_MESSAGE_TEXT &&
        (!ws_utf8_validate(&ws->utf8, buf, count) ||
         (end_of_message && !ws_utf8_is_complete(&ws->utf8))))
        return fail_connection(ws, WS_CLOSE_INVALID_PAYLOAD_DATA, "text message is not UTF-8");

    ws->in_frame = !end_of_frame;
    ws->in_message = !end_of_message;
    result->count = count;
    result->message_type = ws->message_type;
    result->end_of_message = end_of_message;
    return 0;
}

/* ---- Receiving compressed (RFC 7692 §7.2.2) ---- */

/* Sets the inflater's input to the next bytes of the message at hand: the
 * frame's payload, as far as it is in the inbox (unmasked there, in place,
 * the first time it is offered), then, after a final frame's payload, the
 * trailer the sender removed. Returns how many bytes that is: 0 when the
 * payload has not arrived yet, or the frame has no input left. */
static size_t set_inflate_input(struct ws *ws, struct compression *compression)
{
    z_stream *inflater = &compression->inflater;
    uint64_t remaining = ws->frame.payload_length - ws->frame_bytes_read;
    if (remaining == 0) {
        size_t left = ws->frame.fin ? sizeof DEFLATE_TRAILER - compression->trailer_used : 0;
        inflater->next_in = DEFLATE_TRAILER + compression->trailer_used;
        inflater->avail_in = (uInt)left;
        return left;
    }
    size_t available = ws->in_end - ws->in_start; /* at most WS_INBOX_SIZE */
    size_t count = available < remaining ? available : (size_t)remaining;
    size_t ahead = compression->unmasked_ahead;
    if (count > ahead) {
        ws_mask(ws->inbox + ws->in_start + ahead, count - ahead, ws->frame.mask_key,
                ws->frame_bytes_read + ahead);
        compression->unmasked_ahead = (uint32_t)count;
    }
    inflater->next_in = ws->inbox + ws->in_start;
    inflater->avail_in = (uInt)count;
    return count;
}

/* Marks used the first used bytes of what set_inflate_input() offered. */
static void use_inflate_input(struct ws *ws, struct compression *compression, size_t used)
{
    if (ws->frame_bytes_read == ws->frame.payload_length) {
        compression->trailer_used += (uint8_t)used;
        return;
    }
    ws->in_start += used;
    ws->frame_bytes_read += used;
    compression->unmasked_ahead -= (uint32_t)used;
}

/* True once zlib has been given all of the frame's input. */
static bool inflate_input_done(const struct ws *ws, const struct compression *compression)
{
    return ws->frame_bytes_read == ws->frame.payload_length &&
           (!ws->frame.fin || compression->trailer_used == sizeof DEFLATE_TRAILER);
}

/* A sender may end a message with a block marked final (BFINAL, RFC 7692
 * §7.2.3.3), after which zlib takes the stream as ended. We start a new one
 * for what follows, and, unless the client resets its window after each
 * message, give it the old window as its dictionary: later data may still
 * refer back into it. Returns Z_OK, or a zlib error. */
static int restart_inflater(struct ws *ws, z_stream *inflater)
{
    bool keep = !ws->deflate.client_no_context_takeover;
    Bytef *window = keep ? malloc((size_t)1 << DEFLATE_LARGEST_WINDOW_BITS) : NULL;
    if (keep && window == NULL)
        return Z_MEM_ERROR;
    uInt length = 0;
    int status = keep ? inflateGetDictionary(inflater, window, &length) : Z_OK;
    if (status == Z_OK)
        status = inflateReset(inflater);
    if (status == Z_OK && length > 0)
        status = inflateSetDictionary(inflater, window, length);
    free(window);
    return status;
}

/* --trace: a compressed frame is drawn once, with the first payload bytes
 * that are at hand (or none, if its payload is empty), in hex. */
static void trace_compressed_frame(struct ws *ws, struct compression *compression, size_t input)
{
    if (compression->frame_traced || (input == 0 && ws->frame.payload_length > 0))
        return;
    bool payload = ws->frame.payload_length > 0;
    trace_frame(ws, "<<", &ws->frame, (size_t)ws->frame_header_size, ws->inbox + ws->in_start,
                payload ? input : 0, false);
    compression->frame_traced = true;
}

/* Inflates the frame's input into the inflater's output, waiting for more of
 * the payload only while nothing has come out yet. Returns 1 when the frame
 * is done (all input used and all output out), 0 when the output is full or
 * the rest of the payload has not arrived, -1 when the connection failed. */
static int inflate_frame(struct ws *ws, struct compression *compression, uInt room)
{
    z_stream *inflater = &compression->inflater;
    for (;;) {
        size_t input = set_inflate_input(ws, compression);
        trace_compressed_frame(ws, compression, input);
        if (input == 0 && !inflate_input_done(ws, compression)) {
            if (inflater->avail_out < room)
                return 0; /* hand over what came out before waiting */
            if (receive_more(ws) != 0)
                return -1;
            continue;
        }
        uInt out_before = inflater->avail_out;
        int status = inflate(inflater, Z_SYNC_FLUSH);
        use_inflate_input(ws, compression, input - inflater->avail_in);
        bool stuck = input > 0 && inflater->avail_in == input && inflater->avail_out == out_before;
        if (status == Z_STREAM_END)
            status = restart_inflater(ws, inflater);
        if (status == Z_DATA_ERROR || (status == Z_BUF_ERROR && stuck))
            return fail_connection(ws, WS_CLOSE_INVALID_PAYLOAD_DATA, "invalid compressed data");
        if (status != Z_OK && status != Z_BUF_ERROR)
            return fail_connection(ws, WS_CLOSE_INTERNAL_ERROR, "cannot inflate");
        if (inflate_input_done(ws, compression) && inflater->avail_out > 0)
            return 1;
        if (inflater->avail_out == 0)
            return 0;
    }
}

/* Hands the caller the next piece of a compressed message: inflated straight
 * from the inbox into buf, so that neither a whole message nor a copy of it
 * is ever held. zlib may take input without giving output yet, or hold
 * output back until there is room: buf may be of any size. The size limit
 * counts inflated bytes, as they come out: a small message that would
 * inflate to gigabytes (a "zip bomb") fails as soon as it passes the limit. */
static int deliver_inflated(struct ws *ws, uint8_t *buf, size_t len,
                            struct ws_receive_result *result)
{
    z_stream *inflater = get_inflater(ws);
    if (inflater == NULL)
        return fail_connection(ws, WS_CLOSE_INTERNAL_ERROR, "out of memory");
    struct compression *compression = ws->compression;
    uInt room = len > UINT_MAX ? UINT_MAX : (uInt)len;
    inflater->next_out = buf;
    inflater->avail_out = room;
    int frame_done = inflate_frame(ws, compression, room);
    if (frame_done < 0)
        return -1;
    size_t count = room - inflater->avail_out;
    ws->message_size += count;
    uint64_t limit = ws->settings.max_message_size;
    if (limit > 0 && ws->message_size > limit)
        return fail_connection(ws, WS_CLOSE_MESSAGE_TOO_BIG, "message too big");
    bool end_of_message = frame_done && ws->frame.fin;
    if (end_of_message) {
        /* After the trailer, a whole message leaves zlib between two blocks
         * (bit 128 of data_type, zlib.h); anywhere else, it was cut short. */
        if ((inflater->data_type & 128) == 0)
            return fail_connection(ws, WS_CLOSE_INVALID_PAYLOAD_DATA,
                                   "compressed message cut short");
        compression->trailer_used = 0;
        /* client_no_context_takeover: the client starts each message with an
         * empty window, so we may forget this one (RFC 7692 §7.1.1.2). */
        if (ws->deflate.client_no_context_takeover && inflateReset(inflater) != Z_OK)
            return fail_connection(ws, WS_CLOSE_INTERNAL_ERROR, "cannot inflate");
    }
    if (frame_done)
        compression->frame_traced = false;
    return hand_over(ws, buf, count, frame_done, result);
}

/* Hands the caller the next piece of the current data frame's payload. */
static int deliver_payload(struct ws *ws, uint8_t *buf, size_t len,
                           struct ws_receive_result *result)
{
    if (ws->message_compressed)
        return deliver_inflated(ws, buf, len, result);
    uint64_t remaining = ws->frame.payload_length - ws->frame_bytes_read;
    bool first_piece = ws->frame_bytes_read == 0;
    size_t count = 0;
    if (remaining > 0) {
        ssize_t got = read_payload(ws, ws->frame.mask_key, ws->frame_bytes_read, buf,
                                   remaining < len ? (size_t)remaining : len);
        if (got < 0)
            return -1;
        count = (size_t)got;
        ws->frame_bytes_read += count;
    }
    if (first_piece)
        trace_frame(ws, "<<", &ws->frame, (size_t)ws->frame_header_size, buf, count,
                    ws->message_type == WS_MESSAGE_TEXT);
    return hand_over(ws, buf, count, ws->frame_bytes_read == ws->frame.payload_length, result);
}

static void report_close(const struct ws *ws, struct ws_receive_result *result)
{
    result->message_type = WS_MESSAGE_CLOSE;
    result->end_of_message = true;
    result->close_status = ws->peer_close_status;
    memcpy(result->close_description, ws->peer_close_description, sizeof result->close_description);
}

/* Reads and discards frames until the peer's close frame arrives (RFC 6455
 * §7.1.2), giving up after WS_CLOSE_TIMEOUT_MILLISECONDS. Data that arrives
 * meanwhile is still checked (a text message must still be UTF-8), then
 * dropped: nobody is listening for it any more. */
static int wait_for_close_frame(struct ws *ws)
{
    ws->close_deadline = now_milliseconds() + WS_CLOSE_TIMEOUT_MILLISECONDS;
    uint8_t discard[1024];
    struct ws_receive_result dropped;
    while (!close_was_received(ws)) {
        int status =
            ws->in_frame ? deliver_payload(ws, discard, sizeof discard, &dropped) : next_frame(ws);
        if (status != 0)
            return -1;
    }
    return 0;
}

/* The server is shutting down: we start the closing handshake with 1001
 * Going Away (RFC 6455 §7.4.1), wait for the peer's close frame, and report it
 * as if the peer had closed first. We only do so between messages, so no echo
 * is ever cut in half. */
static int go_away(struct ws *ws, struct ws_receive_result *result)
{
    if (send_close_frame(ws, WS_CLOSE_GOING_AWAY, "server shutting down") != 0 ||
        wait_for_close_frame(ws) != 0)
        return -1;
    report_close(ws, result);
    return 0;
}

int ws_receive(struct ws *ws, void *buf, size_t len, struct ws_receive_result *result)
{
    memset(result, 0, sizeof *result);
    /* Frames are read only while the connection is OPEN: a close frame from
     * the peer ends that, and so does a failure. */
    while (ws->state == WS_STATE_OPEN && !ws->in_frame) {
        if (!ws->in_message && inbox_is_empty(ws)) {
            /* Between messages with nothing buffered: the one place where a
             * shutdown may end the connection. */
            if (wait_for_next_message(ws) != 0)
                return -1;
            if (inbox_is_empty(ws))
                return go_away(ws, result);
        }
        if (next_frame(ws) != 0)
            return -1;
    }
    if (close_was_received(ws)) {
        report_close(ws, result); /* just now, or to a caller that asks again */
        return 0;
    }
    if (ws->state != WS_STATE_OPEN) {
        errno = ws->state == WS_STATE_ABORTED ? ECONNABORTED : EPIPE;
        return -1;
    }
    return deliver_payload(ws, buf, len, result);
}

/* ---- Closing ----------------------------------------------------------- */

/* Ends a connection whose closing handshake is complete: "The server MUST
 * close the underlying TCP connection immediately" (RFC 6455 §5.5.1). The
 * peer sends no data after its close frame (§5.5.1), and we have read up to
 * that frame, so no unread byte is left to turn close() into a reset: our
 * end-of-file goes out, and waiting for the peer's would only cost the thread
 * one more wakeup (chapter "Ten thousand at once"). Two things may still come,
 * and then we linger as end_tcp_connection() does: a pong, when our ping
 * crossed the peer's close frame (a peer that has not received our close
 * frame must answer a ping, §5.5.2), and over TLS, the peer's close_notify. */
static void end_closed_connection(const struct ws *ws)
{
    if (ws->pong_awaited_since > 0 || ws->transport.tls != NULL)
        end_tcp_connection(&ws->transport);
    else
        (void)shutdown(ws->transport.fd, SHUT_WR); /* fails only if the peer is gone already */
}

int ws_close(struct ws *ws, enum ws_close_status status, const char *description)
{
    if (ws->state == WS_STATE_ABORTED) {
        errno = ECONNABORTED;
        return -1;
    }
    if (!close_was_sent(ws) && send_close_frame(ws, status, description) != 0)
        return -1;
    if (!close_was_received(ws) && wait_for_close_frame(ws) != 0)
        return -1;
    end_closed_connection(ws);
    return 0;
}

/* ==== 7. UTF-8 (RFC 6455 §8.1, Unicode Table 3-7) ======================= */

/* The first byte of a character says how many continuation bytes follow and
 * which values the first of them may take. The narrowed ranges are what rule
 * out overlong forms (E0, F0), UTF-16 surrogates (ED) and code points above
 * U+10FFFF (F4); every other continuation byte is 80..BF. */
static bool start_character(struct ws_utf8 *state, uint8_t byte)
{
    state->lowest_next = 0x80;
    state->highest_next = 0xBF;
    if (byte <= 0x7F) {
        state->bytes_needed = 0;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
        state->bytes_needed = 1;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
        state->bytes_needed = 2;
        if (byte == 0xE0)
            state->lowest_next = 0xA0; /* below: an overlong 3-byte form */
        if (byte == 0xED)
            state->highest_next = 0x9F; /* above: a surrogate, U+D800..U+DFFF */
    } else if (byte >= 0xF0 && byte <= 0xF4) {
        state->bytes_needed = 3;
        if (byte == 0xF0)
            state->lowest_next = 0x90; /* below: an overlong 4-byte form */
        if (byte == 0xF4)
            state->highest_next = 0x8F; /* above: beyond U+10FFFF */
    } else {
        return false; /* 80..C1 cannot start a character, F5..FF never appear */
    }
    return true;
}

bool ws_utf8_validate(struct ws_utf8 *state, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t byte = bytes[i];
        if (state->bytes_needed == 0) {
            if (!start_character(state, byte))
                return false;
        } else {
            if (byte < state->lowest_next || byte > state->highest_next)
                return false;
            state->bytes_needed--;
            state->lowest_next = 0x80;
            state->highest_next = 0xBF;
        }
    }
    return true;
}

bool ws_utf8_is_complete(const struct ws_utf8 *state)
{
    return state->bytes_needed == 0;
}

/* ==== 8. Close codes (RFC 6455 §7.4) ==================================== */

bool ws_is_valid_close_status(unsigned status)
{
    /* 1000-1003 and 1007-1011 are defined by RFC 6455 §7.4.1, 1012-1014 were
     * added to the IANA registry later. 1004 is reserved, and 1005, 1006 and
     * 1015 mean "no frame said so" and must never be sent (§7.4.1). 3000-3999
     * are registered by libraries and 4000-4999 are private (§7.4.2). */
    if (status >= 1000 && status <= 1003)
        return true;
    if (status >= 1007 && status <= 1014)
        return true;
    return status >= 3000 && status <= 4999;
}
