/* server.c -- the host: the article's Program.cs and WebSocketController.
 *
 *   main()                      WebApplication.CreateBuilder(args) ... app.Run()
 *   websocket_controller_get()  WebSocketController.Get()
 *
 * The design is the simplest one that serves many clients at once: a blocking
 * accept() loop, and one thread per client. Each thread owns its socket from
 * start to end, reads the HTTP request, and either hands the connection to
 * the notifier or answers "400 Bad Request", as the article's controller does.
 */
#define _POSIX_C_SOURCE 200809L

#include "notifier.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SERVER_VERSION "0.1.0"

/* Each thread gets this much stack instead of the 8 MiB default. Our deepest
 * call chain holds the 8 KiB request, the notifier's 4 KiB buffer and libc's
 * own frames, far less than 128 KiB, while a thousand clients reserve
 * 128 MiB of address space rather than 8 GiB. */
#define THREAD_STACK_SIZE ((size_t)128 * 1024)

/* How long the accept loop rests after an error that would only repeat at
 * once, such as running out of file descriptors (EMFILE). */
#define ACCEPT_BACKOFF_MILLISECONDS 100

struct options {
    const char *host;
    const char *port;
};

/* ==== Options =========================================================== */

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: server [OPTION]...\n"
                 "An echo server for WebSocket (RFC 6455) clients: every message comes back.\n"
                 "\n"
                 "  -H, --host=ADDRESS  address to listen on (default 127.0.0.1)\n"
                 "  -p, --port=PORT     port to listen on (default 5175; 0 picks a free one)\n"
                 "  -h, --help          show this help and exit\n"
                 "  -V, --version       show the version and exit\n"
                 "\n"
                 "Try it from a browser console: new WebSocket(\"ws://localhost:5175\")\n");
}

static bool is_valid_port(const char *text)
{
    char *end = NULL;
    errno = 0;
    long port = strtol(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && port >= 0 && port <= 65535;
}

/* Fills *options from the command line. Returns 0 to go on and serve, 1 when
 * the program should exit with success (--help, --version), -1 on a usage
 * error. */
static int parse_options(int argc, char **argv, struct options *options)
{
    static const struct option long_options[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *options = (struct options){.host = "127.0.0.1", .port = "5175"};
    int option;
    while ((option = getopt_long(argc, argv, "H:p:hV", long_options, NULL)) != -1) {
        switch (option) {
        case 'H': options->host = optarg; break;
        case 'p': options->port = optarg; break;
        case 'h': print_usage(stdout); return 1;
        case 'V': printf("server %s\n", SERVER_VERSION); return 1;
        default: return -1; /* getopt_long has already said what was wrong */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!is_valid_port(options->port)) {
        fprintf(stderr, "server: invalid port '%s' (use 0 to 65535)\n", options->port);
        return -1;
    }
    return 0;
}

/* ==== Listening ========================================================= */

/* Writes "127.0.0.1:5175" or "[::1]:5175" for a socket's local address. */
static void describe_local_address(int fd, char *out, size_t size)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    char host[INET6_ADDRSTRLEN] = "?";
    char port[8] = "?";
    if (getsockname(fd, (struct sockaddr *)&address, &length) == 0)
        getnameinfo((struct sockaddr *)&address, length, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, size, address.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
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

/* ==== Serving clients =================================================== */

/* The article's WebSocketController.Get(): a WebSocket request is accepted
 * and handed to the notifier; anything else is answered with an error status
 * (400 Bad Request, or 426 Upgrade Required for a WebSocket version other
 * than 13). */
static void websocket_controller_get(int client_fd)
{
    struct ws_request request;
    struct ws_refusal refusal;
    if (ws_read_request(client_fd, &request, &refusal) != 0) {
        ws_refuse(client_fd, &request, &refusal);
        return;
    }
    if (ws_is_websocket_request(&request, &refusal)) {
        struct ws *ws = ws_accept(client_fd, &request);
        if (ws != NULL) {
            notifier_handle(ws);
            ws_free(ws);
        }
    } else {
        ws_refuse(client_fd, &request, &refusal);
    }
}

/* The body of each client's thread. It owns the socket, and closes it. */
static void *client_thread(void *arg)
{
    int client_fd = *(int *)arg;
    free(arg);
    websocket_controller_get(client_fd);
    close(client_fd);
    return NULL;
}

/* Starts a detached thread for the client: nobody waits for it to finish,
 * and its resources go back to the system as soon as it does. If no thread
 * can be started, the client is told so, and the server goes on. */
static void start_client_thread(int client_fd)
{
    int *arg = malloc(sizeof *arg);
    pthread_attr_t attributes;
    pthread_t thread;
    int error = ENOMEM;
    if (arg != NULL && pthread_attr_init(&attributes) == 0) {
        *arg = client_fd;
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attributes, THREAD_STACK_SIZE);
        error = pthread_create(&thread, &attributes, client_thread, arg);
        pthread_attr_destroy(&attributes);
    }
    if (error != 0) {
        fprintf(stderr, "server: cannot start a thread: %s\n", strerror(error));
        free(arg);
        struct ws_refusal refusal = {503, "the server is too busy: try again later"};
        ws_refuse(client_fd, NULL, &refusal);
        close(client_fd);
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

static void accept_loop(int listen_fd)
{
    for (;;) {
        int client_fd = accept(listen_fd, NULL, NULL);
        if (client_fd < 0) {
            handle_accept_error(errno);
            continue;
        }
        start_client_thread(client_fd);
    }
}

/* ==== main ============================================================== */

int main(int argc, char **argv)
{
    struct options options;
    int parsed = parse_options(argc, argv, &options);
    if (parsed != 0)
        return parsed > 0 ? EXIT_SUCCESS : 2;

    /* Writing to a connection the peer has closed raises SIGPIPE, which ends
     * the process by default. ws.c already sends with MSG_NOSIGNAL; ignoring
     * the signal as well keeps the server alive whatever call writes. */
    signal(SIGPIPE, SIG_IGN);

    int listen_fd = listen_on(options.host, options.port);
    if (listen_fd < 0)
        return EXIT_FAILURE;

    char address[INET6_ADDRSTRLEN + 16];
    describe_local_address(listen_fd, address, sizeof address);
    printf("Listening on ws://%s (press Ctrl+C to stop)\n", address);
    fflush(stdout);

    accept_loop(listen_fd);
    return EXIT_SUCCESS;
}
