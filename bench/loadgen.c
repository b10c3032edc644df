/* loadgen.c -- a load generator for WebSocket echo servers.
 *
 *   loadgen echo      C connections, S-byte messages, P in flight each, for T seconds:
 *                     messages/s, MB/s, round-trip latency p50/p99/p99.9
 *   loadgen handshake C clients that connect, upgrade, echo once and close cleanly,
 *                     over and over: handshakes/s
 *   loadgen hold      C connections held for T seconds, each answering an echo every
 *                     second: how many held (and the server's RSS and threads, --pid)
 *   loadgen large     the echo mode on one connection with large messages: MB/s
 *   loadgen stress    C connections that each echo M messages of random sizes (1 byte
 *                     to --max-size, spread evenly over the powers of two) and types,
 *                     half of them in random fragments, then close: for "make stress"
 *
 * It is a correct RFC 6455 client: it masks every frame with a fresh key,
 * reassembles fragmented echoes, and checks every echoed byte; anything
 * unexpected counts as an error. --raw speaks plain TCP instead (for a TCP
 * echo server, the ceiling of the design). Non-blocking sockets and one epoll
 * loop per thread (--threads) keep the client from being the bottleneck.
 *
 * Output: one line of name=value pairs, for bench/run.py to read.
 */
#define _POSIX_C_SOURCE 200809L

#include "../ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PIPELINE 64
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

enum mode { MODE_ECHO, MODE_HANDSHAKE, MODE_HOLD, MODE_LARGE, MODE_STRESS };

struct settings {
    enum mode mode;
    const char *host;
    int port;
    int connections;
    size_t size;
    int pipeline;
    double seconds;
    int threads;
    bool raw;
    int server_pid;
    int messages;    /* stress: per connection */
    size_t max_size; /* stress: the largest message */
};

static struct settings settings = {.host = "127.0.0.1", .port = 5175, .connections = 1,
                                   .size = 64, .pipeline = 1, .seconds = 5, .threads = 1,
                                   .messages = 1000, .max_size = 65536};

enum state { CONNECTING, HANDSHAKING, OPEN, CLOSING };

struct connection {
    int fd;
    enum state state;
    uint8_t *in; /* received, not yet parsed */
    size_t in_length, in_capacity;
    uint8_t *out; /* to send, from out[out_sent] */
    size_t out_length, out_capacity, out_sent;
    uint64_t first_sequence;    /* of the first message on this connection */
    uint64_t next_sequence;     /* of the next message to send */
    uint64_t expected_sequence; /* of the next echo to receive */
    size_t echo_offset;         /* bytes of that echo received so far */
    double sent_at[MAX_PIPELINE];
    int in_flight;
    bool answered;       /* hold mode: answered since the last round */
    bool closed_by_peer; /* handshake mode: the server's close frame came */
    /* stress mode: the message in flight, and how many have come back */
    uint32_t random;     /* xorshift state */
    size_t message_size;
    uint8_t message_opcode;
    bool echo_started;
    int messages_done;
};

struct worker {
    pthread_t thread;
    int epoll_fd;
    int first, count; /* its share of the connections */
    struct connection *connections;
    uint32_t *latencies; /* microseconds, one per echoed message */
    size_t latency_count, latency_capacity;
    uint64_t messages, bytes, handshakes, errors, held, completed;
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The byte at offset of message number sequence: every echo is checked
 * against it without keeping a copy of what was sent. A text message gets
 * printable ASCII, which is valid UTF-8. */
static uint8_t pattern(uint64_t sequence, size_t offset)
{
    return (uint8_t)(sequence * 131 + offset * 7 + (offset >> 8));
}

static uint8_t message_byte(uint64_t sequence, size_t offset, uint8_t opcode)
{
    uint8_t byte = pattern(sequence, offset);
    return opcode == WS_OPCODE_TEXT ? (uint8_t)(' ' + byte % 95) : byte;
}

static uint32_t next_random(struct connection *c)
{
    uint32_t x = c->random; /* xorshift32: each connection its own stream */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return c->random = x;
}

/* Stress mode: a size from 1 to max_size, each power of two as likely. */
static size_t random_size(struct connection *c)
{
    size_t low = (size_t)1 << (next_random(c) % 17);
    size_t size = low + next_random(c) % low;
    return size < settings.max_size ? size : settings.max_size;
}

/* ==== Buffers =========================================================== */

static void append(uint8_t **bytes, size_t *length, size_t *capacity, const void *data,
                   size_t count)
{
    if (*length + count > *capacity) {
        size_t grown = *capacity ? *capacity : 4096;
        while (grown < *length + count)
            grown *= 2;
        *bytes = realloc(*bytes, grown);
        if (*bytes == NULL) {
            perror("loadgen: realloc");
            exit(1);
        }
        *capacity = grown;
    }
    memcpy(*bytes + *length, data, count);
    *length += count;
}

static void queue(struct connection *c, const void *data, size_t count)
{
    append(&c->out, &c->out_length, &c->out_capacity, data, count);
}

/* Makes room for count more bytes to send and returns where they go. */
static uint8_t *reserve(struct connection *c, size_t count)
{
    if (c->out_length + count > c->out_capacity) {
        size_t grown = c->out_capacity ? c->out_capacity : 4096;
        while (grown < c->out_length + count)
            grown *= 2;
        c->out = realloc(c->out, grown);
        if (c->out == NULL) {
            perror("loadgen: realloc");
            exit(1);
        }
        c->out_capacity = grown;
    }
    uint8_t *place = c->out + c->out_length;
    c->out_length += count;
    return place;
}

/* Appends one masked frame of the current stress message: count bytes
 * from offset. */
static void queue_fragment(struct connection *c, bool fin, uint8_t opcode, size_t offset,
                           size_t count)
{
    struct ws_frame_header header = {.fin = fin, .opcode = opcode, .masked = true,
                                     .payload_length = count};
    for (int i = 0; i < 4; i++)
        header.mask_key[i] = (uint8_t)next_random(c);
    uint8_t header_bytes[WS_MAX_FRAME_HEADER];
    queue(c, header_bytes, ws_encode_frame_header(&header, header_bytes));
    uint8_t *payload = reserve(c, count);
    for (size_t i = 0; i < count; i++)
        payload[i] = message_byte(c->next_sequence, offset + i, c->message_opcode);
    ws_mask(payload, count, header.mask_key, 0);
}

/* Stress mode: one message of a random size and type; half of them are sent
 * in 2 to 8 fragments of random sizes (some empty). */
static void queue_stress_message(struct connection *c)
{
    c->message_size = random_size(c);
    c->message_opcode = next_random(c) % 2 ? WS_OPCODE_TEXT : WS_OPCODE_BINARY;
    c->echo_started = false;
    int fragments = next_random(c) % 2 ? 1 : 2 + (int)(next_random(c) % 7);
    size_t offset = 0;
    for (int f = 0; f < fragments; f++) {
        bool last = f == fragments - 1;
        size_t count = last ? c->message_size - offset
                            : next_random(c) % (c->message_size - offset + 1);
        queue_fragment(c, last, f == 0 ? c->message_opcode : WS_OPCODE_CONTINUATION, offset,
                       count);
        offset += count;
    }
    c->sent_at[c->next_sequence % MAX_PIPELINE] = now();
    c->next_sequence++;
    c->in_flight++;
}

/* Appends one message: a masked binary frame (or, --raw, the bare bytes). */
static void queue_message(struct connection *c)
{
    if (settings.mode == MODE_STRESS) {
        queue_stress_message(c);
        return;
    }
    uint64_t sequence = c->next_sequence++;
    struct ws_frame_header header = {.fin = true, .opcode = WS_OPCODE_BINARY, .masked = true,
                                     .payload_length = settings.size};
    if (!settings.raw) {
        for (int i = 0; i < 4; i++)
            header.mask_key[i] = (uint8_t)rand();
        uint8_t header_bytes[WS_MAX_FRAME_HEADER];
        queue(c, header_bytes, ws_encode_frame_header(&header, header_bytes));
    }
    uint8_t *payload = reserve(c, settings.size);
    for (size_t i = 0; i < settings.size; i++)
        payload[i] = pattern(sequence, i);
    if (!settings.raw)
        ws_mask(payload, settings.size, header.mask_key, 0);
    c->sent_at[sequence % MAX_PIPELINE] = now();
    c->in_flight++;
}

static void queue_close(struct connection *c)
{
    struct ws_frame_header header = {.fin = true, .opcode = WS_OPCODE_CLOSE, .masked = true,
                                     .payload_length = 2};
    uint8_t frame[WS_MAX_FRAME_HEADER + 2];
    size_t size = ws_encode_frame_header(&header, frame);
    frame[size] = 0x03; /* 1000 */
    frame[size + 1] = 0xE8;
    queue(c, frame, size + 2);
    c->state = CLOSING;
}

/* ==== Connections ======================================================= */

static void watch(struct worker *w, struct connection *c, int operation)
{
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
    if (c->out_sent < c->out_length || c->state == CONNECTING)
        event.events |= EPOLLOUT;
    epoll_ctl(w->epoll_fd, operation, c->fd, &event);
}

static void start_connection(struct worker *w, struct connection *c)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)settings.port)};
    inet_pton(AF_INET, settings.host, &address.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int on = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    c->state = CONNECTING;
    c->in_length = c->out_length = c->out_sent = 0;
    c->in_flight = 0;
    c->echo_offset = 0;
    c->closed_by_peer = false;
    c->first_sequence = c->next_sequence = c->expected_sequence = (uint64_t)rand();
    c->random = (uint32_t)rand() | 1;
    c->messages_done = 0;
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0 && errno != EINPROGRESS)
        w->errors++;
    watch(w, c, EPOLL_CTL_ADD);
}

static void end_connection(struct worker *w, struct connection *c)
{
    epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

/* What an open connection does first, and after each echo, per mode. */
static void keep_busy(struct connection *c)
{
    if (settings.mode == MODE_ECHO || settings.mode == MODE_LARGE) {
        while (c->in_flight < settings.pipeline)
            queue_message(c);
    } else if (settings.mode == MODE_STRESS) {
        if (c->in_flight == 0 && c->messages_done < settings.messages)
            queue_message(c);
        else if (c->in_flight == 0 && c->state == OPEN)
            queue_close(c);
    } else if (settings.mode == MODE_HANDSHAKE) {
        if (c->next_sequence == c->first_sequence)
            queue_message(c); /* the one echo */
        else if (c->in_flight == 0)
            queue_close(c);
    }
}

static void record_echo(struct worker *w, struct connection *c)
{
    double latency = now() - c->sent_at[c->expected_sequence % MAX_PIPELINE];
    c->expected_sequence++;
    c->echo_offset = 0;
    c->in_flight--;
    c->answered = true;
    c->messages_done++;
    w->messages++;
    w->bytes += settings.mode == MODE_STRESS ? c->message_size : settings.size;
    if (w->latency_count == w->latency_capacity) {
        w->latency_capacity = w->latency_capacity ? 2 * w->latency_capacity : 65536;
        w->latencies = realloc(w->latencies, w->latency_capacity * sizeof *w->latencies);
    }
    w->latencies[w->latency_count++] = (uint32_t)(latency * 1e6);
}

/* The size of the message whose echo is awaited. */
static size_t expected_size(const struct connection *c)
{
    return settings.mode == MODE_STRESS ? c->message_size : settings.size;
}

/* Checks echoed payload bytes against the pattern. */
static bool check_echo(struct connection *c, const uint8_t *bytes, size_t count)
{
    uint8_t opcode = settings.mode == MODE_STRESS ? c->message_opcode : WS_OPCODE_BINARY;
    for (size_t i = 0; i < count; i++) {
        if (bytes[i] != message_byte(c->expected_sequence, c->echo_offset + i, opcode))
            return false;
    }
    c->echo_offset += count;
    return c->echo_offset <= expected_size(c);
}

/* Stress mode: the echo must start with the message's own opcode, and go
 * on with continuation frames. */
static bool check_opcode(struct connection *c, uint8_t opcode)
{
    if (settings.mode != MODE_STRESS)
        return true;
    bool ok = c->echo_started ? opcode == WS_OPCODE_CONTINUATION : opcode == c->message_opcode;
    c->echo_started = true;
    return ok;
}

/* Parses what has arrived. Returns false on a protocol or echo error. */
static bool handle_input(struct worker *w, struct connection *c)
{
    size_t used = 0;
    if (settings.raw) {
        while (used < c->in_length) {
            size_t count = c->in_length - used;
            if (count > settings.size - c->echo_offset)
                count = settings.size - c->echo_offset;
            if (!check_echo(c, c->in + used, count))
                return false;
            used += count;
            if (c->echo_offset == settings.size)
                record_echo(w, c);
        }
    }
    while (!settings.raw && used < c->in_length) {
        struct ws_frame_header header;
        int size = ws_decode_frame_header(c->in + used, c->in_length - used, &header);
        if (size < 0 || header.masked)
            return false;
        if (size == 0 || c->in_length - used - (size_t)size < header.payload_length)
            break;
        const uint8_t *payload = c->in + used + size;
        used += (size_t)size + header.payload_length;
        if (header.opcode == WS_OPCODE_CLOSE) {
            if (c->state != CLOSING)
                return false;
            w->handshakes++;
            c->closed_by_peer = true;
            c->in_length = 0;
            return true; /* the caller ends the connection */
        }
        if (header.opcode == WS_OPCODE_PING || header.opcode == WS_OPCODE_PONG)
            continue;
        if (!check_opcode(c, header.opcode) ||
            !check_echo(c, payload, (size_t)header.payload_length))
            return false;
        if (header.fin) {
            if (c->echo_offset != expected_size(c))
                return false;
            record_echo(w, c);
        }
    }
    memmove(c->in, c->in + used, c->in_length - used);
    c->in_length -= used;
    return true;
}

/* Reads the 101 once it is whole, and checks its accept key. */
static bool handle_handshake(struct connection *c)
{
    for (size_t i = 0; i + 3 < c->in_length; i++) {
        if (memcmp(c->in + i, "\r\n\r\n", 4) != 0)
            continue;
        char accept[29];
        c->in[i] = '\0';
        bool ok = ws_accept_key(KEY, accept) == 0 && strncmp((char *)c->in, "HTTP/1.1 101 ", 13) == 0 &&
                  strstr((char *)c->in, accept) != NULL;
        memmove(c->in, c->in + i + 4, c->in_length - i - 4);
        c->in_length -= i + 4;
        c->state = OPEN;
        return ok;
    }
    return true; /* not whole yet */
}

static void on_connected(struct connection *c)
{
    if (settings.raw) {
        c->state = OPEN;
        return;
    }
    char request[256];
    int length = snprintf(request, sizeof request,
                          "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          settings.host, settings.port);
    queue(c, request, (size_t)length);
    c->state = HANDSHAKING;
}

/* Sends what it can; false when the connection failed. */
static bool flush(struct connection *c)
{
    while (c->out_sent < c->out_length) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_length - c->out_sent, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c->out_sent += (size_t)n;
    }
    c->out_sent = c->out_length = 0;
    return true;
}

/* Reads what has arrived and acts on it; false when the connection ended
 * (after what came before the end was handled) or failed. */
static bool receive(struct worker *w, struct connection *c)
{
    uint8_t chunk[65536];
    bool ended = false;
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            ended = true;
            break;
        }
        append(&c->in, &c->in_length, &c->in_capacity, chunk, (size_t)n);
    }
    if (c->state == HANDSHAKING && !handle_handshake(c))
        return false;
    if (c->state != HANDSHAKING && !handle_input(w, c))
        return false;
    return !ended;
}

static void on_event(struct worker *w, struct connection *c, uint32_t events)
{
    bool ok = true;
    if (c->state == CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length);
        ok = error == 0;
        if (ok)
            on_connected(c);
    }
    bool was_open = c->state == OPEN;
    if (ok && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        ok = receive(w, c) || c->closed_by_peer;
    if (ok && c->closed_by_peer && settings.mode == MODE_STRESS) {
        if (c->messages_done == settings.messages)
            w->completed++;
        end_connection(w, c); /* done for good */
        return;
    }
    if (ok && c->closed_by_peer) {
        end_connection(w, c); /* the closing handshake is done: again */
        start_connection(w, c);
        return;
    }
    if (ok && c->state == OPEN && (!was_open || settings.mode != MODE_HOLD))
        keep_busy(c);
    if (ok)
        ok = flush(c);
    if (!ok) {
        w->errors++;
        end_connection(w, c);
        if (settings.mode == MODE_HANDSHAKE)
            start_connection(w, c);
        return;
    }
    watch(w, c, EPOLL_CTL_MOD);
}

/* ==== Workers =========================================================== */

/* Hold mode: every second, each open connection must have answered the
 * previous round; then it is asked again. */
static void hold_round(struct worker *w, bool last)
{
    w->held = 0;
    for (int i = 0; i < w->count; i++) {
        struct connection *c = &w->connections[i];
        if (c->fd < 0 || c->state != OPEN)
            continue;
        if (c->answered || c->next_sequence == c->expected_sequence)
            w->held++;
        if (last)
            continue;
        c->answered = false;
        queue_message(c);
        if (!flush(c))
            w->errors++;
        watch(w, c, EPOLL_CTL_MOD);
    }
}

static bool all_ended(const struct worker *w)
{
    for (int i = 0; i < w->count; i++) {
        if (w->connections[i].fd >= 0)
            return false;
    }
    return true;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    w->epoll_fd = epoll_create1(0);
    for (int i = 0; i < w->count; i++)
        start_connection(w, &w->connections[i]);
    double end = now() + settings.seconds;
    double next_round = now() + 1;
    struct epoll_event events[256];
    while (now() < end && !(settings.mode == MODE_STRESS && all_ended(w))) {
        int count = epoll_wait(w->epoll_fd, events, 256, 50);
        for (int i = 0; i < count; i++)
            on_event(w, events[i].data.ptr, events[i].events);
        if (settings.mode == MODE_HOLD && now() >= next_round) {
            hold_round(w, false);
            next_round += 1;
        }
    }
    if (settings.mode == MODE_HOLD) {
        double grace = now() + 1; /* let the last round answer */
        while (now() < grace) {
            int count = epoll_wait(w->epoll_fd, events, 256, 50);
            for (int i = 0; i < count; i++)
                on_event(w, events[i].data.ptr, events[i].events);
        }
        hold_round(w, true);
    }
    return NULL;
}

static int compare_latency(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The server's resident memory (kB) and thread count, from /proc. */
static void server_usage(long *rss_kb, long *threads)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", settings.server_pid);
    FILE *status = fopen(path, "r");
    char line[256];
    *rss_kb = *threads = -1;
    while (status != NULL && fgets(line, sizeof line, status) != NULL) {
        sscanf(line, "VmRSS: %ld", rss_kb);
        sscanf(line, "Threads: %ld", threads);
    }
    if (status != NULL)
        fclose(status);
}

static void report(struct worker *workers, double elapsed)
{
    uint64_t messages = 0, bytes = 0, handshakes = 0, errors = 0, held = 0, completed = 0;
    size_t samples = 0;
    for (int t = 0; t < settings.threads; t++) {
        messages += workers[t].messages;
        bytes += workers[t].bytes;
        handshakes += workers[t].handshakes;
        errors += workers[t].errors;
        held += workers[t].held;
        completed += workers[t].completed;
        samples += workers[t].latency_count;
    }
    uint32_t *all = malloc((samples + 1) * sizeof *all);
    size_t n = 0;
    for (int t = 0; t < settings.threads; t++) {
        memcpy(all + n, workers[t].latencies, workers[t].latency_count * sizeof *all);
        n += workers[t].latency_count;
    }
    qsort(all, n, sizeof *all, compare_latency);
    uint32_t p50 = n ? all[n / 2] : 0, p99 = n ? all[n * 99 / 100] : 0;
    uint32_t p999 = n ? all[n * 999 / 1000] : 0;
    printf("messages_per_s=%.0f mb_per_s=%.2f p50_us=%u p99_us=%u p999_us=%u "
           "handshakes_per_s=%.0f errors=%llu",
           (double)messages / elapsed, (double)bytes * 2 / elapsed / 1e6, p50, p99, p999,
           (double)handshakes / elapsed, (unsigned long long)errors);
    if (settings.mode == MODE_STRESS)
        printf(" messages=%llu bytes=%llu completed=%llu of=%d seconds=%.1f",
               (unsigned long long)messages, (unsigned long long)bytes,
               (unsigned long long)completed, settings.connections, elapsed);
    if (settings.mode == MODE_HOLD) {
        long rss_kb, threads;
        server_usage(&rss_kb, &threads);
        printf(" held=%llu of=%d server_rss_kb=%ld server_threads=%ld", (unsigned long long)held,
               settings.connections, rss_kb, threads);
    }
    printf("\n");
    free(all);
}

/* ==== Options and main ================================================== */

static void usage(void)
{
    fprintf(stderr, "usage: loadgen echo|handshake|hold|large|stress [--host A] [--port P]\n"
                    "       [--connections C] [--size S] [--pipeline P] [--seconds T]\n"
                    "       [--threads N] [--raw] [--pid SERVER_PID]\n"
                    "       [--messages M] [--max-size S]   (stress)\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static const struct option options[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'}, {"size", required_argument, NULL, 's'},
        {"pipeline", required_argument, NULL, 'P'}, {"seconds", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 'n'},  {"raw", no_argument, NULL, 'r'},
        {"pid", required_argument, NULL, 'i'},      {"messages", required_argument, NULL, 'm'},
        {"max-size", required_argument, NULL, 'M'}, {NULL, 0, NULL, 0},
    };
    if (argc < 2)
        usage();
    const char *modes[] = {"echo", "handshake", "hold", "large", "stress"};
    settings.mode = (enum mode)-1;
    for (int m = 0; m < 5; m++)
        if (strcmp(argv[1], modes[m]) == 0)
            settings.mode = (enum mode)m;
    if ((int)settings.mode < 0)
        usage();
    int option;
    optind = 2;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'H': settings.host = optarg; break;
        case 'p': settings.port = atoi(optarg); break;
        case 'c': settings.connections = atoi(optarg); break;
        case 's': settings.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'P': settings.pipeline = atoi(optarg); break;
        case 't': settings.seconds = atof(optarg); break;
        case 'n': settings.threads = atoi(optarg); break;
        case 'r': settings.raw = true; break;
        case 'i': settings.server_pid = atoi(optarg); break;
        case 'm': settings.messages = atoi(optarg); break;
        case 'M': settings.max_size = (size_t)strtoull(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (settings.pipeline < 1 || settings.pipeline > MAX_PIPELINE || settings.threads < 1 ||
        settings.connections < settings.threads || settings.size == 0)
        usage();
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    /* Thousands of connections need thousands of file descriptors. */
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);

    struct connection *connections = calloc((size_t)settings.connections, sizeof *connections);
    struct worker *workers = calloc((size_t)settings.threads, sizeof *workers);
    int per_thread = settings.connections / settings.threads;
    for (int t = 0; t < settings.threads; t++) {
        workers[t].first = t * per_thread;
        workers[t].count = t == settings.threads - 1 ? settings.connections - t * per_thread
                                                     : per_thread;
        workers[t].connections = connections + workers[t].first;
    }
    double start = now();
    for (int t = 0; t < settings.threads; t++)
        pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]);
    for (int t = 0; t < settings.threads; t++)
        pthread_join(workers[t].thread, NULL);
    report(workers, now() - start);
    return 0;
}
