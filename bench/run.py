#!/usr/bin/env python3
"""The benchmark: our server beside Node's ws, Python's websockets and a plain
thread-per-connection TCP echo, on this machine, in one run.

Usage: run.py [--rounds N] [--smoke] [--wsserver PATH] [--baseline PATH] [--only TEXT] [--servers A,B] [--baseline PATH]

Every scenario runs against every server once per round, servers interleaved,
and the table shows the median of the rounds, with the ratio ours/peer. The
table is printed and written to bench/results/latest.md (not with --smoke,
which runs every mode for a second or two against our server only, so that
the benchmark never rots). Loopback only; every server is stopped by its pid.

The load generator is bench/loadgen, except in the "compressed" scenarios:
there every server is started with --permessage-deflate and the client is
bench/deflate_client.js (Node's ws with perMessageDeflate; loadgen cannot
compress), the same for every server, in one process per core for the echo.
"""
import argparse
import os
import re
import socket
import resource
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(BENCH)
LOADGEN = os.path.join(BENCH, "loadgen")
DEFLATE_CLIENT = os.path.join(BENCH, "deflate_client.js")
NODE_MODULES = os.path.join(BENCH, "node", "node_modules")

SERVERS = {
    "ours": [os.path.join(PROJECT, "server"), "--port", "0"],
    "node ws": ["node", os.path.join(BENCH, "peers", "node_ws_echo.js"), "0"],
    "python websockets": ["/usr/bin/python3",
                          os.path.join(BENCH, "peers", "python_websockets_echo.py"), "0"],
    "tcp echo": [os.path.join(BENCH, "peers", "tcp_echo"), "0"],
}

# Peers that take their port as their only argument and print nothing.
PORT_ARGUMENT_PEERS = {"wsserver"}

# (name, loadgen arguments, the figures shown, servers it applies to)
WS = ["ours", "node ws", "python websockets"]
ALL = WS + ["tcp echo"]
# (--baseline adds its server to both lists, so it runs wherever ours does)
SCENARIOS = [
    ("64 B echo, 1 connection", "echo --connections 1 --size 64",
     ["messages_per_s", "p50_us", "p99_us"], ALL),
    ("64 B echo, 100 connections", "echo --connections 100 --size 64 --threads 2",
     ["messages_per_s", "p50_us", "p99_us"], ALL),
    ("4 KiB echo, 100 connections", "echo --connections 100 --size 4096 --threads 2",
     ["messages_per_s", "mb_per_s"], ALL),
    ("1 MiB messages, 1 connection", "large --size 1048576", ["mb_per_s"], WS),
    ("16 MiB messages, 1 connection", "large --size 16777216", ["mb_per_s"], WS),
    ("handshakes, 8 clients", "handshake --connections 8", ["handshakes_per_s"], WS),
    ("10,000 idle connections held", "hold --connections 10000 --threads 2",
     ["held", "kib_per_connection", "server_threads"], WS),
    # permessage-deflate (arguments starting with "deflate": see the docstring).
    # 4 KiB of JSON, like the uncompressed 4 KiB row; server_cpu_us is the
    # server's CPU time per echoed message, wire_ratio the bytes it sent on the
    # wire per byte of payload it echoed.
    ("4 KiB JSON echo, compressed, 100 connections",
     "deflate echo --connections 100 --size 4096",
     ["messages_per_s", "mb_per_s", "server_cpu_us", "wire_ratio"], WS),
    # Each connection has echoed one 4 KiB message, so the server holds both
    # of its zlib streams; compare with the uncompressed row above.
    ("10,000 idle connections held, compressed", "deflate hold --connections 10000 --size 4096",
     ["held", "kib_per_connection"], WS),
]
# Figures where less is better (the ratio still reads ours/peer).
LOWER_IS_BETTER = {"p50_us", "p99_us", "p999_us", "kib_per_connection", "server_threads",
                   "server_cpu_us", "wire_ratio"}
# Shown on each round's line, not in the table.
INFO = ["client_cpu_us"]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_on_port(name):
    """A peer that takes its port as its only argument and prints nothing
    (wsServer): started on a free port, ready once it accepts a connection."""
    port = free_port()
    process = subprocess.Popen(SERVERS[name] + [str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{name} did not start listening on port {port}")


def start(name, options=()):
    if name in PORT_ARGUMENT_PEERS:
        if options:
            raise RuntimeError(f"{name} has no {' '.join(options)}")
        return start_on_port(name)
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    process = subprocess.Popen(SERVERS[name] + list(options), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, preexec_fn=raise_fd_limit)
    line = process.stdout.readline().decode()
    if "Listening on" not in line:
        stop(process)
        raise RuntimeError(f"{name} did not start: {' '.join(SERVERS[name] + list(options))}")
    port = int(re.search(r":(\d+)", line.split("Listening on")[1]).group(1))
    return process, port


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"^VmRSS:\s+(\d+)", status.read(), re.M).group(1))


def cpu_seconds(pid):
    """The CPU time (user and system) of every thread of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_deflate_client(arguments, port, seconds, pid):
    """bench/deflate_client.js: for the echo, one process per core (the client
    compresses and inflates as much as the server does, so one process would
    be the bottleneck), all counting over the same seconds, while the server's
    CPU time is read; for the hold, one process."""
    words = arguments.split()
    mode, options = words[1], words[2:]
    connections = int(options[options.index("--connections") + 1])
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    base = ["node", DEFLATE_CLIENT, mode, "--port", str(port)]
    if mode == "hold":
        commands = [base + options + ["--pid", str(pid)]]
    else:
        processes = max(1, min(os.cpu_count() or 1, connections))
        start_at = time.time() + 1  # node's start, the handshakes, a warm-up
        commands = []
        for i in range(processes):
            share = connections // processes + (i < connections % processes)
            rest = re.sub(r"--connections \d+", f"--connections {share}", " ".join(options))
            commands.append(base + rest.split() + ["--seconds", str(seconds),
                                                   "--start-at", str(int(start_at * 1000))])
    clients = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, preexec_fn=raise_fd_limit) for command in commands]
    server_cpu = None
    if mode == "echo":
        time.sleep(max(0, start_at - time.time()))
        before = cpu_seconds(pid)
        time.sleep(seconds)
        server_cpu = cpu_seconds(pid) - before
    runs = []
    for client in clients:
        try:
            out, err = client.communicate(timeout=seconds + 300)
        except subprocess.TimeoutExpired:
            client.kill()
            out, err = client.communicate()
        for line in err.splitlines():
            print(f"  {line}", flush=True)
        figures = {}
        if out.strip():
            figures = {k: float(v) for k, v in (pair.split("=") for pair in out.split())}
        if client.returncode != 0:
            figures["errors"] = max(1, figures.get("errors", 0))
        runs.append(figures)
    figures = {"errors": sum(r.get("errors", 0) for r in runs)}
    if mode == "hold":
        return {**runs[0], **figures}
    if any("messages" not in r for r in runs):
        return figures
    messages = sum(r["messages"] for r in runs)
    figures["messages_per_s"] = messages / seconds
    figures["mb_per_s"] = sum(r["mb_per_s"] for r in runs)
    figures["wire_ratio"] = statistics.mean(r["wire_ratio"] for r in runs)
    if messages:
        figures["server_cpu_us"] = server_cpu / messages * 1e6
        figures["client_cpu_us"] = sum(r["client_cpu_s"] for r in runs) / messages * 1e6
    return figures


def run_loadgen(arguments, port, seconds, raw, pid):
    command = [LOADGEN] + arguments.split() + ["--port", str(port), "--seconds", str(seconds)]
    if raw:
        command.append("--raw")
    if pid:
        command += ["--pid", str(pid)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    figures = dict(pair.split("=") for pair in result.stdout.split())
    return {key: float(value) for key, value in figures.items()}


def measure(name, scenario, seconds, connections_scale):
    title, arguments, wanted, servers = scenario
    if connections_scale != 1:
        arguments = re.sub(r"--connections (\d+)",
                           lambda m: f"--connections {max(2, int(int(m.group(1)) * connections_scale))}",
                           arguments)
    deflate = arguments.startswith("deflate")
    process, port = start(name, ["--permessage-deflate"] if deflate else [])
    try:
        time.sleep(0.2)
        baseline = rss_kb(process.pid)
        hold = arguments.split()[int(deflate)] == "hold"
        if deflate:
            figures = run_deflate_client(arguments, port, seconds, process.pid)
        else:
            figures = run_loadgen(arguments, port, seconds if not hold else max(2, seconds * 6),
                                  raw=name == "tcp echo", pid=process.pid if hold else 0)
        if hold and figures.get("held"):
            connections = int(figures["of"])
            figures["kib_per_connection"] = (figures["server_rss_kb"] - baseline) / connections
        return figures
    finally:
        stop(process)


def format_figure(key, value):
    if value is None:
        return "-"
    if key == "mb_per_s":
        return f"{value:.0f}"
    if key in ("kib_per_connection", "server_cpu_us", "client_cpu_us"):
        return f"{value:.1f}"
    if key == "wire_ratio":
        return f"{value:.3f}"
    return f"{value:.0f}"


def table(results, servers):
    peers = [s for s in servers if s != "ours"]
    header = "| " + " | ".join(["scenario", "figure", "ours"] +
                               [f"{p} | ours/{p}" for p in peers]) + " |"
    lines = [header, "|" + "---|" * (3 + 2 * len(peers))]
    for title, _, wanted, applies in SCENARIOS:
        if not any(scenario == title for scenario, _ in results):
            continue
        for key in wanted:
            def median(server):
                values = [r[key] for r in results.get((title, server), []) if key in r]
                return statistics.median(values) if values else None
            ours = median("ours")
            row = [title, key, format_figure(key, ours)]
            for peer in peers:
                theirs = median(peer) if peer in applies else None
                ratio = f"{ours / theirs:.2f}" if ours is not None and theirs else "-"
                row += [format_figure(key, theirs), ratio]
            lines.append("| " + " | ".join(row) + " |")
    errors = {}
    for (title, server), runs in results.items():
        errors[server] = errors.get(server, 0) + int(sum(r.get("errors", 0) for r in runs))
    return "\n".join(lines), errors


def ensure_node_ws():
    if os.path.isdir(os.path.join(NODE_MODULES, "ws")):
        return
    print("installing Node's ws into bench/node (npm install --prefix bench/node ws@8)")
    subprocess.run(["npm", "install", "--prefix", os.path.join(BENCH, "node"), "ws@8",
                    "--no-audit", "--no-fund", "--no-save"], check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--servers", help="comma-separated, e.g. ours,node ws")
    parser.add_argument("--wsserver", metavar="PATH",
                        help="a wsServer echo (built by hand from github.com/Theldus/wsServer, "
                             "never kept here) that takes its port as its only argument, "
                             "measured as 'wsserver' in every uncompressed WebSocket scenario")
    parser.add_argument("--baseline", metavar="PATH",
                        help="another build of our server (an older commit, say), measured as "
                             "'baseline' in every scenario ours is in")
    options = parser.parse_args()
    if options.wsserver:
        SERVERS["wsserver"] = [os.path.abspath(options.wsserver)]
        for index, scenario in enumerate(SCENARIOS):  # not compressed: wsServer has no deflate
            if "ours" in scenario[3] and not scenario[1].startswith("deflate"):
                SCENARIOS[index] = scenario[:3] + (scenario[3] + ["wsserver"],)
    if options.baseline:
        SERVERS["baseline"] = [os.path.abspath(options.baseline), "--port", "0"]
        for scenario in SCENARIOS:
            if "baseline" not in scenario[3]:
                scenario[3].append("baseline")
    servers = ["ours"] if options.smoke else list(SERVERS)
    if options.servers:
        servers = options.servers.split(",")
    scenarios = [s for s in SCENARIOS if not options.only or options.only in s[0]]
    rounds, seconds, scale = (1, 1, 0.01) if options.smoke else (options.rounds, options.seconds, 1)
    if not options.smoke or any(s[1].startswith("deflate") for s in scenarios):
        ensure_node_ws()
    results = {}
    for round_number in range(1, rounds + 1):
        for scenario in scenarios:
            for name in servers:
                if name not in scenario[3]:
                    continue
                try:
                    figures = measure(name, scenario, seconds, scale)
                except RuntimeError as error:  # an older --baseline without an option, say
                    print(f"round {round_number}: {scenario[0]}: {error}", flush=True)
                    figures = {"errors": 1}
                results.setdefault((scenario[0], name), []).append(figures)
                shown = scenario[2] + [k for k in INFO if k in figures]
                print(f"round {round_number}: {scenario[0]}: {name}: "
                      + " ".join(f"{k}={format_figure(k, figures.get(k))}" for k in shown)
                      + f" errors={figures.get('errors', 0):.0f}", flush=True)
    text, errors = table(results, servers)
    print()
    print(text)
    print(f"\nerrors counted by the load generator: {errors}")
    if not options.smoke and not options.only and not options.servers:
        with open(os.path.join(BENCH, "results", "latest.md"), "w") as out:
            out.write(f"# Benchmark results\n\nMedians of {rounds} rounds, servers interleaved, "
                      f"{seconds:g} s per echo scenario, on this machine ({os.cpu_count()} cores, "
                      f"load generator and server sharing them). Made by `make bench` on "
                      f"{time.strftime('%Y-%m-%d')}.\n\n{text}\n\n"
                      f"Errors counted by the load generator: {errors}.\n")
    # Our server must not lose a byte; a peer's errors are reported, not ours to fix.
    return 0 if errors.get("ours", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
