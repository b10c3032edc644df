/* server.c -- the host: the article's Program.cs and WebSocketController.
 *
 *   main()                      WebApplication.CreateBuilder(args) ... app.Run()
 *   websocket_controller_get()  WebSocketController.Get()
 *
 * The design is the simplest one that serves many clients at once: a blocking
 * accept loop, and one thread per client. Each thread owns its socket from
 * start to end, reads the HTTP request, and either hands the connection to
 * the notifier or answers "400 Bad Request", as the article's controller does.
 *
 * Around that core, the host keeps the server alive in the real world (the
 * tutorial, from "The slow client" on): limits and timeouts for every client,
 * a registry of the clients so that Ctrl+C can close them all with 1001
 * Going Away, and one log line for each connection that opens, closes, or
 * is refused.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* for MAP_ANONYMOUS, which POSIX gained only in 2024 */

#include "notifier.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SERVER_VERSION "0.3.0"

/* Each thread gets this much stack instead of the 8 MiB default. Our deepest
 * call chain holds the notifier's 2 KiB buffer and the frames of libc and
 * OpenSSL, far less than 128 KiB, while a thousand clients reserve 128 MiB of
 * address space rather than 8 GiB. (The request is on the heap: see
 * websocket_controller_get().) */
#define THREAD_STACK_SIZE ((size_t)128 * 1024)

/* How long the accept loop rests after an error that would only repeat at
 * once, such as running out of file descriptors (EMFILE). */
#define ACCEPT_BACKOFF_MILLISECONDS 100

/* File descriptors kept free for everything that is not a client: the
 * listening socket, the stop pipe, standard input, output and error, and
 * what libraries open. The default --max-connections is the limit less these. */
#define RESERVED_DESCRIPTORS 32

/* What a client refused with 503 is told (Retry-After), in seconds. */
#define RETRY_AFTER_SECONDS 5

/* After the shutdown timeout, how long we give the connections we cut off to
 * finish. */
#define DISCONNECT_GRACE_SECONDS 2

#define MAX_ALLOWED_ORIGINS 16

/* Set when SIGINT or SIGTERM arrives (see "Shutting down" below). */
static volatile sig_atomic_t stop_signalled;

struct options {
    const char *host;
    const char *port;
    long max_connections;
    int shutdown_timeout_seconds;
    const char *allowed_origins[MAX_ALLOWED_ORIGINS];
    int allowed_origin_count;
    bool quiet;
    bool trace;
    const char *tls_certificate_path; /* --tls-cert and --tls-key, or NULL */
    const char *tls_key_path;
    struct ws_tls *tls;           /* loaded from them at start: serve wss:// */
    const char *client_page_path; /* --client-page: the HTML file, or NULL */
    char *client_page;            /* its contents, read once at start */
    size_t client_page_length;
    struct ws_settings ws; /* handshake timeout, keep-alive, message size */
};

/* ==== Options =========================================================== */

static void print_usage(FILE *out, long default_max_connections)
{
    fprintf(out,
            "Usage: server [OPTION]...\n"
            "An echo server for WebSocket (RFC 6455) clients: every message comes back.\n"
            "\n"
            "  -H, --host=ADDRESS         listen on ADDRESS (default 127.0.0.1)\n"
            "  -p, --port=PORT            listen on PORT (default 5175; 0 picks a free one)\n"
            "      --max-connections=N    more clients at once get 503 (default %ld)\n"
            "      --max-message=BYTES    larger messages get close 1009 (default 16777216)\n"
            "      --handshake-timeout=S  a request not complete in S s gets 408 (default 10)\n"
            "      --ping-interval=S      ping after S s silent; 1001 after 2S (default 30)\n"
            "      --shutdown-timeout=S   on SIGTERM, 1001 to all, then wait S s (default 5)\n"
            "      --allow-origin=ORIGIN  accept browsers from ORIGIN only (repeatable;\n"
            "                             default: from any origin)\n"
            "      --client-page=FILE     serve FILE (web/client.html) at GET / (default off)\n"
            "      --tls-cert=FILE        serve wss:// with this certificate (default off)\n"
            "      --tls-key=FILE         its private key, with --tls-cert (default none)\n"
            "      --permessage-deflate   compress for clients that offer it (default off)\n"
            "  -t, --trace                print the handshake and every frame on stderr\n"
            "  -q, --quiet                no log line per connection on stderr\n"
            "  -h, --help                 show this help and exit\n"
            "  -V, --version              show the version and exit\n"
            "\n"
            "0 turns --max-message, --handshake-timeout or --ping-interval off. man server.\n",
            default_max_connections);
}

/* Reads a whole number from min to max. Returns false if text is not one. */
static bool parse_number(const char *text, long long min, long long max, long long *value)
{
    char *end = NULL;
    errno = 0;
    long long number = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || number < min || number > max)
        return false;
    *value = number;
    return true;
}

/* The long options without a short form get numbers above any character. */
enum {
    OPTION_MAX_CONNECTIONS = 256,
    OPTION_MAX_MESSAGE,
    OPTION_HANDSHAKE_TIMEOUT,
    OPTION_PING_INTERVAL,
    OPTION_SHUTDOWN_TIMEOUT,
    OPTION_ALLOW_ORIGIN,
    OPTION_CLIENT_PAGE,
    OPTION_TLS_CERT,
    OPTION_TLS_KEY,
    OPTION_PERMESSAGE_DEFLATE,
};

/* Stores one numeric option in *options. Returns 0, or -1 after saying what
 * was wrong. */
static int set_number_option(struct options *options, int option, const char *text)
{
    long long value = 0;
    const long long day = 24LL * 60 * 60;
    bool ok = false;
    switch (option) {
    case OPTION_MAX_CONNECTIONS:
        ok = parse_number(text, 1, 1000000, &value);
        options->max_connections = (long)value;
        break;
    case OPTION_MAX_MESSAGE:
        ok = parse_number(text, 0, INT64_MAX, &value);
        options->ws.max_message_size = (uint64_t)value;
        break;
    case OPTION_HANDSHAKE_TIMEOUT:
        ok = parse_number(text, 0, day, &value);
        options->ws.handshake_timeout_seconds = (int)value;
        break;
    case OPTION_PING_INTERVAL:
        ok = parse_number(text, 0, day, &value);
        options->ws.ping_interval_seconds = (int)value;
        break;
    default: /* OPTION_SHUTDOWN_TIMEOUT */
        ok = parse_number(text, 0, day, &value);
        options->shutdown_timeout_seconds = (int)value;
        break;
    }
    if (!ok)
        fprintf(stderr, "server: invalid number '%s' (see --help for the range)\n", text);
    return ok ? 0 : -1;
}

static int add_allowed_origin(struct options *options, const char *origin)
{
    if (options->allowed_origin_count == MAX_ALLOWED_ORIGINS) {
        fprintf(stderr, "server: at most %d --allow-origin options\n", MAX_ALLOWED_ORIGINS);
        return -1;
    }
    options->allowed_origins[options->allowed_origin_count++] = origin;
    return 0;
}

/* Fills *options from the command line. Returns 0 to go on and serve, 1 when
 * the program should exit with success (--help, --version), -1 on a usage
 * error. */
static int parse_options(int argc, char **argv, struct options *options)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"max-connections", required_argument, NULL, OPTION_MAX_CONNECTIONS},
        {"max-message", required_argument, NULL, OPTION_MAX_MESSAGE},
        {"handshake-timeout", required_argument, NULL, OPTION_HANDSHAKE_TIMEOUT},
        {"ping-interval", required_argument, NULL, OPTION_PING_INTERVAL},
        {"shutdown-timeout", required_argument, NULL, OPTION_SHUTDOWN_TIMEOUT},
        {"allow-origin", required_argument, NULL, OPTION_ALLOW_ORIGIN},
        {"quiet", no_argument, NULL, 'q'},
        {"trace", no_argument, NULL, 't'},
        {"client-page", required_argument, NULL, OPTION_CLIENT_PAGE},
        {"tls-cert", required_argument, NULL, OPTION_TLS_CERT},
        {"tls-key", required_argument, NULL, OPTION_TLS_KEY},
        {"permessage-deflate", no_argument, NULL, OPTION_PERMESSAGE_DEFLATE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    long default_max_connections = options->max_connections;
    int option;
    while ((option = getopt_long(argc, argv, "H:p:qthV", long_options, NULL)) != -1) {
        int error = 0;
        switch (option) {
        case 'H': options->host = optarg; break;
        case 'p': options->port = optarg; break;
        case 'q': options->quiet = true; break;
        case 't': options->trace = true; break;
        case OPTION_CLIENT_PAGE: options->client_page_path = optarg; break;
        case OPTION_TLS_CERT: options->tls_certificate_path = optarg; break;
        case OPTION_TLS_KEY: options->tls_key_path = optarg; break;
        case OPTION_PERMESSAGE_DEFLATE: options->ws.permessage_deflate = true; break;
        case OPTION_ALLOW_ORIGIN: error = add_allowed_origin(options, optarg); break;
        case OPTION_MAX_CONNECTIONS:
        case OPTION_MAX_MESSAGE:
        case OPTION_HANDSHAKE_TIMEOUT:
        case OPTION_PING_INTERVAL:
        case OPTION_SHUTDOWN_TIMEOUT: error = set_number_option(options, option, optarg); break;
        case 'h': print_usage(stdout, default_max_connections); return 1;
        case 'V': printf("server %s\n", SERVER_VERSION); return 1;
        default: return -1; /* getopt_long has already said what was wrong */
        }
        if (error != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    long long port = 0;
    if (!parse_number(options->port, 0, 65535, &port)) {
        fprintf(stderr, "server: invalid port '%s' (use 0 to 65535)\n", options->port);
        return -1;
    }
    bool has_certificate = options->tls_certificate_path != NULL;
    bool has_key = options->tls_key_path != NULL;
    if (has_certificate != has_key) {
        fprintf(stderr, "server: --tls-cert and --tls-key go together\n");
        return -1;
    }
    return 0;
}

/* Says why the client page cannot be read, and lets go of what
 * read_whole_file() held (fd and buffer, if any). Returns -1. */
static int client_page_error(const char *path, const char *why, int fd, char *buffer)
{
    fprintf(stderr, "server: cannot read the client page '%s': %s\n", path, why);
    if (fd >= 0)
        close(fd);
    free(buffer);
    return -1;
}

/* Reads the whole regular file at path into *contents (malloc'ed). Returns
 * 0, or -1 after saying why. */
static int read_whole_file(const char *path, char **contents, size_t *length)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return client_page_error(path, strerror(errno), -1, NULL);
    struct stat status;
    if (fstat(fd, &status) != 0)
        return client_page_error(path, strerror(errno), fd, NULL);
    if (!S_ISREG(status.st_mode))
        return client_page_error(path, "not a regular file", fd, NULL);
    size_t size = (size_t)status.st_size;
    char *buffer = malloc(size + 1);
    if (buffer == NULL)
        return client_page_error(path, strerror(errno), fd, NULL);
    for (size_t got = 0; got < size;) {
        ssize_t count = read(fd, buffer + got, size - got);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0) /* an error, or a file that shrank while we read it */
            return client_page_error(path, count < 0 ? strerror(errno) : "the file shrank", fd,
                                     buffer);
        got += (size_t)count;
    }
    close(fd);
    *contents = buffer;
    *length = size;
    return 0;
}

/* The default --max-connections. Each client costs a file descriptor, and a
 * process may only have RLIMIT_NOFILE of them ("ulimit -n"): often 1024 by
 * default, though the system allows more (the hard limit). We raise our own
 * limit as far as we may, and keep a few descriptors in reserve. */
static long descriptor_budget(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 1024 - RESERVED_DESCRIPTORS;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
            getrlimit(RLIMIT_NOFILE, &limit);
    }
    long budget = limit.rlim_cur > 1000000 ? 1000000 : (long)limit.rlim_cur;
    if (budget < 2L * RESERVED_DESCRIPTORS)
        return RESERVED_DESCRIPTORS;
    return budget - RESERVED_DESCRIPTORS;
}

static void set_default_options(struct options *options)
{
    *options = (struct options){
        .host = "127.0.0.1",
        .port = "5175",
        .max_connections = descriptor_budget(),
        .shutdown_timeout_seconds = 5,
        .ws =
            {
                .handshake_timeout_seconds = 10,
                .ping_interval_seconds = 30,
                .max_message_size = (uint64_t)16 * 1024 * 1024,
                .stop_fd = -1,
            },
    };
}

/* --tls-cert and --tls-key: loaded once, at start, so that a missing file or
 * a key that does not match is said now, not at the first client. Returns 0,
 * or -1 after saying why. */
static int load_tls(struct options *options)
{
    char error[256];
    options->tls =
        ws_tls_load(options->tls_certificate_path, options->tls_key_path, error, sizeof error);
    if (options->tls == NULL) {
        fprintf(stderr, "server: %s\n", error);
        return -1;
    }
    return 0;
}

/* ==== Logging =========================================================== */

/* Writes text and a newline to stderr with one writev(), so that lines from
 * different threads never mix. writev() takes the two pieces where they are:
 * a copy of the line with its newline would put another 768 bytes on the
 * stack of every thread that logs, and fprintf() to stderr, which has no
 * buffer, 8 KiB (chapter "Ten thousand at once"). */
static void write_line(const char *text)
{
    struct iovec pieces[2] = {{.iov_base = (void *)text, .iov_len = strlen(text)},
                              {.iov_base = "\n", .iov_len = 1}};
    ssize_t ignored = writev(STDERR_FILENO, pieces, 2);
    (void)ignored; /* nowhere to report that stderr is gone */
}

/* Writes one line to stderr, unless --quiet: the time (UTC, to the
 * millisecond), then the message, cut at 512 bytes. Logging is one of the
 * deepest things a connection's thread does, and a stack costs its deepest
 * moment (chapter "Ten thousand at once"): so the line is no longer than it needs
 * to be, and the milliseconds are written digit by digit, as "%03ld" would
 * take snprintf() down its deeper path for padding. */
static void log_line(const struct options *options, const char *format, ...)
{
    if (options->quiet)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    char line[512];
    size_t length = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &utc);
    long milliseconds = now.tv_nsec / 1000000;
    line[length++] = '.';
    line[length++] = (char)('0' + milliseconds / 100);
    line[length++] = (char)('0' + milliseconds / 10 % 10);
    line[length++] = (char)('0' + milliseconds % 10);
    line[length++] = 'Z';
    line[length++] = ' ';
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(line + length, sizeof line - length, format, arguments);
    va_end(arguments);
    write_line(line);
}

/* Writes "127.0.0.1:5175" or "[::1]:5175" for a socket address. */
static void describe_address(const struct sockaddr *address, socklen_t length, char *out,
                             size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    char port[8] = "?";
    getnameinfo(address, length, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, size, address->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* ==== The client registry =============================================== */

/* One client with a thread. The accept loop fills it in; from then on only
 * the client's thread touches it, except for the registry's links. */
struct client {
    struct ws_transport transport; /* the socket, and TLS over it with --tls-cert */
    unsigned long id;              /* 1 for the first client, 2 for the next... */
    char peer[INET6_ADDRSTRLEN + 16];
    struct timespec started;
    const struct options *options;
    struct ws_settings settings; /* the options' settings, and this client for --trace */
    struct client *previous;
    struct client *next;
};

/* --trace: a line about this client's connection, on stderr. */
static void trace_line(void *context, const char *text)
{
    const struct client *client = context;
    char line[512];
    snprintf(line, sizeof line, "thread %lu %s", client->id, text);
    write_line(line);
}

/* --trace: the request as we parsed it (ws.c traces the response). The
 * request line is printable ASCII (ws_parse_request() refuses anything
 * else), but a header value may hold any byte above ASCII: it is escaped, so
 * that no client can send escape sequences to the operator's terminal. */
static void trace_request(const struct client *client, const struct ws_request *request)
{
    char line[320];
    snprintf(line, sizeof line, "<< %s %s %s", request->method, request->target, request->version);
    trace_line((void *)client, line);
    for (size_t i = 0; i < request->header_count; i++) {
        const char *value = request->headers[i].value;
        char escaped[256];
        ws_escape((const uint8_t *)value, strlen(value), escaped, sizeof escaped);
        snprintf(line, sizeof line, "<< %s: %s", request->headers[i].name, escaped);
        trace_line((void *)client, line);
    }
}

/* Every client with a thread, so that the server can count them (for
 * --max-connections) and reach them all when it shuts down. The mutex
 * protects the list, the count and next_id; it is held only to add, remove
 * or walk, never while waiting for a client. "changed" is signalled whenever
 * a client leaves. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct client *first;
    long count;
    unsigned long next_id;
} registry = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0};

/* Adds client unless max clients are registered already. Returns whether it
 * did; either way, client->id is set. */
static bool register_client(struct client *client, long max)
{
    pthread_mutex_lock(&registry.lock);
    client->id = ++registry.next_id;
    bool room = registry.count < max;
    if (room) {
        client->previous = NULL;
        client->next = registry.first;
        if (registry.first != NULL)
            registry.first->previous = client;
        registry.first = client;
        registry.count++;
    }
    pthread_mutex_unlock(&registry.lock);
    return room;
}

/* Removes a registered client, closes its socket and frees it: the last
 * thing its thread does. Closing and freeing under the lock means that once
 * the count reaches 0, no client owns anything any more, and main() may
 * return. */
static void unregister_client(struct client *client)
{
    pthread_mutex_lock(&registry.lock);
    if (client->previous != NULL)
        client->previous->next = client->next;
    else
        registry.first = client->next;
    if (client->next != NULL)
        client->next->previous = client->previous;
    registry.count--;
    if (client->transport.fd >= 0) /* a client refused at once gave its socket away */
        ws_transport_close(&client->transport);
    free(client);
    pthread_cond_broadcast(&registry.changed);
    pthread_mutex_unlock(&registry.lock);
}

/* Waits until no client is left, for at most seconds. Returns how many are
 * left. */
static long wait_for_clients(int seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline); /* the clock pthread_cond_timedwait uses */
    deadline.tv_sec += seconds;
    pthread_mutex_lock(&registry.lock);
    int timed_out = 0; /* pthread_cond_timedwait() says ETIMEDOUT */
    while (registry.count > 0 && timed_out == 0)
        timed_out = pthread_cond_timedwait(&registry.changed, &registry.lock, &deadline);
    long left = registry.count;
    pthread_mutex_unlock(&registry.lock);
    return left;
}

/* Cuts every client off: shutdown() wakes a thread blocked on its socket,
 * whose next read sees the end of the stream and whose next write fails. */
static void disconnect_all_clients(void)
{
    pthread_mutex_lock(&registry.lock);
    for (struct client *client = registry.first; client != NULL; client = client->next)
        shutdown(client->transport.fd, SHUT_RDWR);
    pthread_mutex_unlock(&registry.lock);
}

/* ==== Listening ========================================================= */

/* Writes the address a listening socket is bound to, as describe_address(). */
static void describe_local_address(int fd, char *out, size_t size)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0)
        snprintf(out, size, "?");
    else
        describe_address((struct sockaddr *)&address, length, out, size);
}

/* Creates a socket listening on host:port, trying each address the name
 * resolves to until one works. Returns the socket, or -1 after printing why. */
static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *addresses = NULL;
    int error = getaddrinfo(host, port, &hints, &addresses);
    if (error != 0) {
        fprintf(stderr, "server: cannot resolve '%s': %s\n", host, gai_strerror(error));
        return -1;
    }
    int fd = -1;
    int saved_errno = 0;
    for (struct addrinfo *a = addresses; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            saved_errno = errno;
            continue;
        }
        /* Lets a restarted server bind at once, even while connections of
         * the previous one are still in TIME_WAIT. */
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            saved_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0)
        fprintf(stderr, "server: cannot listen on %s port %s: %s\n", host, port,
                strerror(saved_errno));
    return fd;
}

/* ==== Request buffers =================================================== */

/* Each handshake needs a struct ws_request (9 KiB), only for a moment. From
 * malloc(), a burst of handshakes leaves holes behind: the freed requests lie
 * between the small blocks that every connection keeps (struct ws, malloc's
 * cache for each thread), and the pages they touched stay in memory (1.2 KiB
 * per connection after 10,000 at once; chapter "Ten thousand at once").
 * mmap() takes pages straight from the kernel, and munmap() gives every one
 * back. Both are system calls, so the buffers of the last MAX_SPARE_REQUESTS
 * handshakes are kept for the next ones, and most handshakes make none. */
#define MAX_SPARE_REQUESTS 64

static struct ws_request *spare_requests[MAX_SPARE_REQUESTS];
static int spare_request_count;
static pthread_mutex_t spare_requests_lock = PTHREAD_MUTEX_INITIALIZER;

/* A spare request buffer, or a new one; NULL when out of memory. */
static struct ws_request *take_request_buffer(void)
{
    struct ws_request *request = NULL;
    pthread_mutex_lock(&spare_requests_lock);
    if (spare_request_count > 0)
        request = spare_requests[--spare_request_count];
    pthread_mutex_unlock(&spare_requests_lock);
    if (request == NULL) {
        request =
            mmap(NULL, sizeof *request, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (request == MAP_FAILED)
            request = NULL;
    }
    return request;
}

/* Keeps the buffer for the next handshake, or gives it back to the kernel
 * when MAX_SPARE_REQUESTS are kept already. */
static void give_back_request_buffer(struct ws_request *request)
{
    pthread_mutex_lock(&spare_requests_lock);
    bool kept = spare_request_count < MAX_SPARE_REQUESTS;
    if (kept)
        spare_requests[spare_request_count++] = request;
    pthread_mutex_unlock(&spare_requests_lock);
    if (!kept)
        (void)munmap(request, sizeof *request); /* a whole mapping of ours: it cannot fail */
}

/* ==== Serving clients =================================================== */

/* RFC 6455 §10.2: a browser sends the Origin of the page that opens a
 * WebSocket, and a server that serves only its own pages should refuse the
 * others (README, "Cross-site WebSocket hijacking"). A request without Origin
 * does not come from a browser page, and is let through, as ASP.NET Core does.
 * With no --allow-origin, every origin is allowed. */
static bool is_origin_allowed(const struct options *options, const struct ws_request *request)
{
    const char *origin = ws_request_header(request, "Origin");
    if (options->allowed_origin_count == 0 || origin == NULL)
        return true;
    for (int i = 0; i < options->allowed_origin_count; i++) {
        if (strcasecmp(origin, options->allowed_origins[i]) == 0)
            return true;
    }
    return false;
}

/* Answers a request that will not become a WebSocket, and logs it. */
static void refuse(struct client *client, const struct ws_request *request,
                   const struct ws_refusal *refusal)
{
    if (refusal->status != 0)
        log_line(client->options, "refuse %s thread %lu: %d %s", client->peer, client->id,
                 refusal->status, refusal->reason);
    if (refusal->status != 0 && client->options->trace) {
        char line[256];
        snprintf(line, sizeof line, ">> HTTP/1.1 %d %s (%s)", refusal->status,
                 ws_status_text(refusal->status), refusal->reason);
        trace_line((void *)client, line);
    }
    ws_refuse(&client->transport, request, refusal);
}

/* --tls-cert: the TLS handshake comes first, before the HTTP request. Its
 * failures are logged here, as a client that never finished it could not
 * read an answer: refuse() logs only what it answers. */
static bool start_tls(struct client *client, struct ws_refusal *refusal)
{
    if (ws_start_tls(&client->transport, client->options->tls, &client->settings, refusal) == 0)
        return true;
    if (refusal->status == 0)
        log_line(client->options, "refuse %s thread %lu: TLS handshake failed: %s", client->peer,
                 client->id, refusal->reason);
    return false;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* --client-page: a browser asking for the page itself, "GET /", with no
 * Upgrade header. */
static bool is_page_request(const struct options *options, const struct ws_request *request)
{
    return options->client_page != NULL &&
           (strcmp(request->method, "GET") == 0 || strcmp(request->method, "HEAD") == 0) &&
           (strcmp(request->target, "/") == 0 || strncmp(request->target, "/?", 2) == 0) &&
           ws_request_header(request, "Upgrade") == NULL;
}

/* The opening handshake: a WebSocket request is accepted, and the new
 * connection returned; anything else is answered with an error status (400
 * Bad Request; 426 for a WebSocket version other than 13; 403 for an origin
 * that is not allowed; 408 when the request is too slow to arrive), or with
 * the client page, and NULL returned. */
static struct ws *accept_websocket(struct client *client, struct ws_request *request)
{
    const struct options *options = client->options;
    struct ws_refusal refusal;
    if (options->tls != NULL && !start_tls(client, &refusal)) {
        refuse(client, NULL, &refusal); /* a 400 in plain text; nothing else can be said */
        return NULL;
    }
    if (ws_read_request(&client->transport, request, &refusal, &client->settings) != 0) {
        refuse(client, request, &refusal);
        return NULL;
    }
    if (options->trace)
        trace_request(client, request);
    if (is_page_request(options, request)) {
        log_line(options, "page %s thread %lu: %s %s", client->peer, client->id, request->method,
                 request->target);
        ws_send_page(&client->transport, request, "text/html; charset=utf-8", options->client_page,
                     options->client_page_length);
        return NULL;
    }
    if (!ws_is_websocket_request(request, &refusal)) {
        refuse(client, request, &refusal);
        return NULL;
    }
    if (!is_origin_allowed(options, request)) {
        refusal = (struct ws_refusal){403, "this origin may not open a WebSocket here", 0};
        refuse(client, request, &refusal);
        return NULL;
    }
    struct ws *ws = ws_accept(&client->transport, request, &client->settings, &refusal);
    if (ws == NULL)
        refuse(client, request, &refusal); /* 400 for a malformed extension list */
    return ws;
}

/* The article's WebSocketController.Get(): the handshake, then the notifier.
 * The request is needed only until the handshake is over: on the thread's
 * stack, its pages would stay in memory for as long as the connection is
 * open (chapter "What a thread costs"). */
static void websocket_controller_get(struct client *client)
{
    struct ws_request *request = take_request_buffer();
    if (request == NULL) {
        struct ws_refusal refusal = {503, "the server is out of memory", RETRY_AFTER_SECONDS};
        refuse(client, NULL, &refusal);
        return;
    }
    struct ws *ws = accept_websocket(client, request);
    give_back_request_buffer(request);
    if (ws == NULL)
        return;
    const struct options *options = client->options;
    char security[128];
    ws_transport_security(&client->transport, security, sizeof security);
    log_line(options, "open %s thread %lu%s%s", client->peer, client->id,
             security[0] != '\0' ? " over " : "", security);
    notifier_handle(ws);
    struct ws_stats stats;
    ws_get_stats(ws, &stats);
    ws_free(ws);
    log_line(options, "close %s thread %lu: code %d, %llu bytes in, %llu out, %.3f s", client->peer,
             client->id, (int)stats.close_status, (unsigned long long)stats.bytes_received,
             (unsigned long long)stats.bytes_sent, seconds_since(&client->started));
}

/* The body of each client's thread. */
static void *client_thread(void *arg)
{
    struct client *client = arg;
    websocket_controller_get(client);
    ws_thread_done();          /* before main() may return and end the process */
    unregister_client(client); /* closes the socket and frees client */
    return NULL;
}

/* ==== Refusing without waiting ========================================= */

/* A client that the accept loop refuses with 503 cannot be closed at once:
 * the request it sent and we never read would make the kernel answer with a
 * reset, which can destroy our 503 before the client reads it. Waiting for
 * each one on the accept loop would stall everyone behind it (a burst of a
 * thousand refused clients once meant minutes of silence). So the accept loop
 * hands each refused socket to one thread, the lingerer, through a pipe: it
 * reads and discards what each client sends until the client leaves, or
 * LINGER_MILLISECONDS pass, and only then closes the socket. */
#define LINGER_MILLISECONDS 2000

/* How many refused sockets the lingerer keeps at once. When a new one comes
 * and there is no room, the oldest is closed early: by then it has almost
 * always read its 503, and we have read its request. */
#define MAX_LINGERING 128

static int linger_pipe[2] = {-1, -1};

static int64_t now_milliseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The sockets the lingerer waits on: fds[0] is the pipe, fds[1..count-1] the
 * refused sockets, oldest first, each with its deadline. */
struct lingering {
    struct pollfd fds[1 + MAX_LINGERING];
    int64_t deadlines[1 + MAX_LINGERING];
    nfds_t count;
};

static void stop_lingering(struct lingering *lingering, nfds_t i)
{
    close(lingering->fds[i].fd);
    lingering->count--;
    memmove(&lingering->fds[i], &lingering->fds[i + 1],
            (lingering->count - i) * sizeof lingering->fds[0]);
    memmove(&lingering->deadlines[i], &lingering->deadlines[i + 1],
            (lingering->count - i) * sizeof lingering->deadlines[0]);
}

static void start_lingering(struct lingering *lingering, int fd)
{
    if (lingering->count == 1 + MAX_LINGERING)
        stop_lingering(lingering, 1);
    lingering->fds[lingering->count] = (struct pollfd){.fd = fd, .events = POLLIN};
    lingering->deadlines[lingering->count] = now_milliseconds() + LINGER_MILLISECONDS;
    lingering->count++;
}

/* Reads and discards what has arrived on fd. Returns false once the client
 * has left (end of stream, or an error). */
static bool discard_input(int fd)
{
    char discard[1024];
    ssize_t received = recv(fd, discard, sizeof discard, MSG_DONTWAIT);
    return received > 0 || (received < 0 && (errno == EAGAIN || errno == EINTR));
}

/* The lingerer's thread. It ends when the pipe's writing end is closed (the
 * accept loop has stopped), closing every socket it still holds. */
static void *linger_thread(void *arg)
{
    (void)arg;
    static struct lingering lingering; /* one lingerer: too large for a small stack */
    lingering.fds[0] = (struct pollfd){.fd = linger_pipe[0], .events = POLLIN};
    lingering.count = 1;
    for (;;) {
        int timeout = -1; /* no socket to wait for: only the pipe */
        if (lingering.count > 1) {
            int64_t left = lingering.deadlines[1] - now_milliseconds();
            timeout = left > 0 ? (int)left : 0;
        }
        if (poll(lingering.fds, lingering.count, timeout) < 0)
            continue; /* EINTR: nothing else can go wrong with these arguments */
        int64_t now = now_milliseconds();
        for (nfds_t i = lingering.count - 1; i >= 1; i--) {
            bool client_left = lingering.fds[i].revents != 0 && !discard_input(lingering.fds[i].fd);
            if (client_left || lingering.deadlines[i] <= now)
                stop_lingering(&lingering, i);
        }
        if (lingering.fds[0].revents == 0)
            continue;
        int fd;
        if (read(linger_pipe[0], &fd, sizeof fd) != (ssize_t)sizeof fd)
            break; /* end of the pipe: the server is stopping */
        start_lingering(&lingering, fd);
    }
    while (lingering.count > 1)
        stop_lingering(&lingering, 1);
    return NULL;
}

/* Answers "503 Service Unavailable" from the accept loop itself, without a
 * thread of the client's own, and hands the socket to the lingerer: the
 * client no longer owns it. */
static void refuse_at_once(struct client *client, const char *reason)
{
    int fd = client->transport.fd;
    client->transport.fd = -1;
    if (client->options->tls != NULL) {
        /* A TLS client could read an answer only after a TLS handshake, which
         * takes a round trip and some cryptography: too long for the accept
         * loop. It is closed without one, and sees the connection reset. */
        log_line(client->options, "refuse %s: %s (closed: no answer before TLS)", client->peer,
                 reason);
        close(fd);
        return;
    }
    log_line(client->options, "refuse %s: 503 %s", client->peer, reason);
    struct ws_refusal refusal = {503, reason, RETRY_AFTER_SECONDS};
    ws_refuse_without_waiting(fd, &refusal);
    /* A write of at most PIPE_BUF bytes to a pipe is all or nothing. When the
     * pipe is full (the lingerer is far behind), the socket is closed now. */
    if (write(linger_pipe[1], &fd, sizeof fd) != (ssize_t)sizeof fd)
        close(fd);
}

/* Starts a detached thread for a registered client: nobody waits for it to
 * finish, and its resources go back to the system as soon as it does. If no
 * thread can be started, the client is told so, and the server goes on. */
static void start_client_thread(struct client *client)
{
    pthread_attr_t attributes;
    pthread_t thread;
    int error = pthread_attr_init(&attributes);
    if (error == 0) {
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attributes, THREAD_STACK_SIZE);
        error = pthread_create(&thread, &attributes, client_thread, client);
        pthread_attr_destroy(&attributes);
    }
    if (error != 0) {
        fprintf(stderr, "server: cannot start a thread: %s\n", strerror(error));
        refuse_at_once(client, "the server cannot start a thread: try again later");
        unregister_client(client);
    }
}

static void sleep_milliseconds(long milliseconds)
{
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

/* What to do when accept() fails: it never ends the loop. A signal (EINTR) or
 * a client that gave up while waiting in the queue (ECONNABORTED) needs
 * nothing; anything else, such as running out of file descriptors (EMFILE),
 * would fail again at once, so we rest a little instead of spinning. */
static void handle_accept_error(int error)
{
    if (error == EINTR || error == ECONNABORTED)
        return;
    fprintf(stderr, "server: accept failed: %s\n", strerror(error));
    sleep_milliseconds(ACCEPT_BACKOFF_MILLISECONDS);
}

/* Starts a thread for the client just accepted on fd, or refuses it at once
 * when --max-connections clients are connected already. */
static void serve_client(int fd, const struct sockaddr_storage *peer, socklen_t peer_length,
                         const struct options *options)
{
    struct client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        close(fd);
        return;
    }
    ws_transport_init(&client->transport, fd);
    client->options = options;
    client->settings = options->ws;
    if (options->trace) {
        client->settings.trace = trace_line;
        client->settings.trace_context = client;
    }
    clock_gettime(CLOCK_MONOTONIC, &client->started);
    describe_address((const struct sockaddr *)peer, peer_length, client->peer, sizeof client->peer);
    if (register_client(client, options->max_connections)) {
        start_client_thread(client);
    } else {
        refuse_at_once(client, "too many connections: try again later");
        free(client);
    }
}

/* Waits until a client is waiting to be accepted, or the stop comes.
 * Returns false for the stop. */
static bool wait_for_client(int listen_fd, int stop_fd)
{
    struct pollfd fds[2] = {{.fd = listen_fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
        handle_accept_error(errno);
    return fds[1].revents == 0;
}

/* Accepts clients until the stop. The listening socket does not block: while
 * clients are queued, accept() takes the next one at once; when none is,
 * poll() waits for a client or the stop, which accept() alone could not. */
static void accept_loop(int listen_fd, int stop_fd, const struct options *options)
{
    while (!stop_signalled) {
        struct sockaddr_storage peer;
        socklen_t peer_length = sizeof peer;
        int fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_length);
        if (fd >= 0)
            serve_client(fd, &peer, peer_length, options);
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            handle_accept_error(errno);
        else if (!wait_for_client(listen_fd, stop_fd))
            return;
    }
}

/* ==== Shutting down ===================================================== */

/* SIGINT (Ctrl+C) and SIGTERM write a byte into this pipe. Nobody ever reads
 * it, so from then on its read end stays readable: every thread that poll()s
 * it sees the stop at once, whichever thread the signal interrupted. The
 * handler also sets stop_signalled, which the accept loop looks at between
 * two clients without a system call. */
static int stop_pipe[2] = {-1, -1};

/* A signal handler may only call async-signal-safe functions; write() is one. */
static void on_stop_signal(int signal_number)
{
    (void)signal_number;
    stop_signalled = 1;
    int saved_errno = errno;
    ssize_t ignored = write(stop_pipe[1], "x", 1);
    (void)ignored; /* a full pipe already says "stop" */
    errno = saved_errno;
}

/* Adds O_NONBLOCK to the flags of fd. (F_SETFL with O_NONBLOCK alone would
 * clear every other flag the file has.) Returns 0, or -1. */
static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static int install_stop_handlers(void)
{
    if (pipe(stop_pipe) != 0 || set_nonblocking(stop_pipe[1]) != 0)
        return -1;
    struct sigaction action = {.sa_handler = on_stop_signal};
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0)
        return -1;
    /* Writing to a connection the peer has closed raises SIGPIPE, which ends
     * the process by default. ws.c already sends with MSG_NOSIGNAL; ignoring
     * the signal as well keeps the server alive whatever call writes. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Starts the lingerer (see "Refusing without waiting"). Returns 0, or -1. */
static int start_lingerer(pthread_t *thread)
{
    if (pipe(linger_pipe) != 0 || set_nonblocking(linger_pipe[1]) != 0)
        return -1;
    errno = pthread_create(thread, NULL, linger_thread, NULL);
    return errno == 0 ? 0 : -1;
}

/* Stops the lingerer: it sees the end of its pipe, closes every socket it
 * still holds, and ends. */
static void stop_lingerer(pthread_t thread)
{
    close(linger_pipe[1]);
    pthread_join(thread, NULL);
    close(linger_pipe[0]);
}

/* The accept loop has stopped. Every connection has seen the stop too and is
 * closing with 1001 once the messages it had received are echoed; we give
 * them shutdown_timeout_seconds, then cut off the ones still open. Returns
 * how many connections would not end even then (normally 0). */
static long shut_down(const struct options *options)
{
    pthread_mutex_lock(&registry.lock);
    long open = registry.count;
    pthread_mutex_unlock(&registry.lock);
    log_line(options, "shutting down: %ld connection(s) open", open);
    long left = wait_for_clients(options->shutdown_timeout_seconds);
    if (left > 0) {
        log_line(options, "shutting down: cutting off %ld connection(s)", left);
        disconnect_all_clients();
        left = wait_for_clients(DISCONNECT_GRACE_SECONDS);
    }
    if (left > 0)
        log_line(options, "stopped, leaving %ld connection(s) that would not end", left);
    else
        log_line(options, "stopped");
    return left;
}

/* ==== main ============================================================== */

/* RFC 6455 §1.3's example: the key "dGhlIHNhbXBsZSBub25jZQ==" gives the
 * accept value "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=". Checked once, at start: if
 * ws_accept_key() gets it wrong (libcrypto broken, or a bug of ours), no
 * client could ever connect. It also loads OpenSSL's SHA-1 (its code and
 * tables) before the first client comes, not in the middle of the first
 * handshakes. */
static bool accept_key_works(void)
{
    char accept[29];
    return ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept) == 0 &&
           strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0;
}

int main(int argc, char **argv)
{
    /* The options outlive main(): a thread that would not end when the
     * server stops may still read them while the process exits. */
    static struct options options;
    set_default_options(&options);
    int parsed = parse_options(argc, argv, &options);
    if (parsed != 0)
        return parsed > 0 ? EXIT_SUCCESS : 2;

    if (!accept_key_works()) {
        fprintf(stderr, "server: ws_accept_key() does not give RFC 6455 §1.3's example "
                        "(s3pPLMBiTxaQ9kYGzzhZRbK+xOo=): no client could connect\n");
        return EXIT_FAILURE;
    }

    if (options.client_page_path != NULL &&
        read_whole_file(options.client_page_path, &options.client_page,
                        &options.client_page_length) != 0)
        return EXIT_FAILURE;
    if (options.tls_certificate_path != NULL && load_tls(&options) != 0)
        return EXIT_FAILURE;
    if (install_stop_handlers() != 0) {
        perror("server: cannot set up the signal handlers");
        return EXIT_FAILURE;
    }
    options.ws.stop_fd = stop_pipe[0];

    int listen_fd = listen_on(options.host, options.port);
    if (listen_fd < 0)
        return EXIT_FAILURE;
    /* accept_loop() needs a listening socket that does not block. (On Linux
     * the sockets accept() returns do not inherit the flag: they block, as
     * the client threads expect.) */
    pthread_t lingerer;
    if (set_nonblocking(listen_fd) != 0 || start_lingerer(&lingerer) != 0) {
        perror("server: cannot start");
        return EXIT_FAILURE;
    }

    char address[INET6_ADDRSTRLEN + 16];
    describe_local_address(listen_fd, address, sizeof address);
    printf("Listening on %s://%s (press Ctrl+C to stop)\n", options.tls != NULL ? "wss" : "ws",
           address);
    fflush(stdout);

    accept_loop(listen_fd, stop_pipe[0], &options);
    close(listen_fd);
    stop_lingerer(lingerer);
    if (shut_down(&options) > 0) {
        /* Threads that would not end may still be inside OpenSSL, and exit()
         * would run OpenSSL's cleanup under them. _exit() ends the process
         * without running anything more (standard output was flushed above,
         * and standard error has no buffer). */
        _exit(EXIT_SUCCESS);
    }
    free(options.client_page); /* every client is done with it, and with TLS */
    ws_tls_free(options.tls);
    return EXIT_SUCCESS;
}
