# Builds the tutorial's server in this folder, and tests it.
#
#   make                  build ./server from the .c files here
#   make run              build it and start it on ws://localhost:5175
#   make test STEP=N      run the tests of step N (the step you have just typed)
#
# The tutorial wrote this file ("make -C tutorial start" or "step"); it knows
# where the tutorial's tests are. Everything else in the folder is yours.
TUTORIAL = @TUTORIAL@
STEP    ?= @STEP@
PYTHON  ?= $(firstword $(wildcard /usr/bin/python3) python3)
CC      ?= cc
CFLAGS  ?= -O2 -g

SOURCES = $(wildcard *.c)
HEADERS = $(wildcard *.h)

server: $(SOURCES) $(HEADERS)
	@test -n "$(SOURCES)" || { echo "No .c file here yet: type step 1 (chapter 1) first."; exit 2; }
	$(CC) -std=c11 -Wall -Wextra -Wpedantic -pthread $(CFLAGS) -o $@ $(SOURCES) -lssl -lcrypto -lz

run: server
	./server

test: server
	@test -n "$(STEP)" || { echo "Which step? make test STEP=N, N being the step you typed last."; exit 2; }
	@$(PYTHON) $(TUTORIAL)/tests/test_steps.py $(STEP) ./server

.PHONY: run test
