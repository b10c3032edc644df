/* tcp_echo.c -- the ceiling of our design: a thread-per-connection TCP echo
 * server with no WebSocket at all. Whatever it costs is the price of the
 * design; whatever our server costs beyond it is the price of WebSocket.
 *
 * Usage: tcp_echo PORT   (prints "Listening on ...:PORT" like our server) */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void *echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buffer[4096];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) {
        for (ssize_t sent = 0, m; sent < n; sent += m) {
            m = send(fd, buffer + sent, (size_t)(n - sent), MSG_NOSIGNAL);
            if (m <= 0) {
                close(fd);
                return NULL;
            }
        }
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    int listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 0))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (bind(listen_fd, (struct sockaddr *)&address, length) != 0 || listen(listen_fd, 4096) != 0) {
        perror("tcp_echo");
        return 1;
    }
    getsockname(listen_fd, (struct sockaddr *)&address, &length);
    printf("Listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        pthread_t thread;
        if (pthread_create(&thread, &attributes, echo, (void *)(intptr_t)fd) != 0)
            close(fd);
    }
}
