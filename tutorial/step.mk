# Builds one step of the tutorial. "make" builds ./server; "make run" starts it.
CC     ?= cc
CFLAGS ?= -O2 -g

SOURCES = $(wildcard *.c)
HEADERS = $(wildcard *.h)

server: $(SOURCES) $(HEADERS)
	$(CC) -std=c11 -Wall -Wextra -Wpedantic -pthread $(CFLAGS) -o $@ $(SOURCES) -lcrypto

run: server
	./server

.PHONY: run
