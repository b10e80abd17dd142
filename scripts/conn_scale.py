"""Connection scale (see scripts/conn_scale.sh): rwsplit's memory with many idle clients, and a
connect/login/SELECT 1/quit storm.

1. Idle clients: --holders processes open --clients PyMySQL connections between them, run
   `SELECT 1` once on each and keep them open. rwsplit's VmRSS is read before the first client
   and once all are in (and VmHWM, the peak); the backend connections it holds then are counted
   from its own sockets and from the admin API's pools.
2. Storm: --workers processes loop connect + login + `SELECT 1` + close (COM_QUIT) for
   --seconds; rwsplit's CPU time (utime + stime) over the storm gives CPU per cycle.

The rwsplit this starts is tracked by PID and stopped by PID; so are the helper processes.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import queue
import re
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import pymysql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import stop  # noqa: E402  (SIGTERM by PID, SIGKILL after 15 s)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")
PORT = 6036
ADMIN_PORT = 6086
MARKER = "<!-- notes -->"
HEADING = "## Connection scale"
# Sockets rwsplit needs besides one per client: listener, admin, monitor, pools (3 x 200).
FD_MARGIN = 1024
# How many distinct error messages a phase keeps to report.
KEEP_ERRORS = 5


def parse_args():
    ap = argparse.ArgumentParser(description="rwsplit's memory with many idle clients, and a "
                                 "connect/login/SELECT 1/quit storm (see scripts/conn_scale.sh)")
    ap.add_argument("--clients", type=int, default=10000, help="idle clients held open")
    ap.add_argument("--holders", type=int, default=4,
                    help="processes opening and holding the idle clients")
    ap.add_argument("--idle-timeout", type=float, default=180,
                    help="seconds the idle phase may take to open every client")
    ap.add_argument("--workers", type=int, default=4, help="storm worker processes")
    ap.add_argument("--seconds", type=float, default=10, help="storm duration (at most 120)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                    help="Markdown file whose '## Connection scale' section is replaced")
    ap.add_argument("--no-write", action="store_true", help="print the results only")
    a = ap.parse_args()
    if a.clients < 1 or a.holders < 1 or a.workers < 1:
        ap.error("--clients, --holders and --workers must be at least 1")
    if not 0 < a.seconds <= 120:
        ap.error("--seconds must be in (0, 120]")
    return a


# ---------------------------------------------------------------------------------------------
# rwsplit: config, start, stop, and what /proc says about it


def write_config(tmp, clients):
    """config/rwsplit.toml with this harness's ports, warn-level logs and room for the clients."""
    text = open(os.path.join(ROOT, "config", "rwsplit.toml")).read()
    edits = [
        (r'listen = "127\.0\.0\.1:6033"', f'listen = "127.0.0.1:{PORT}"'),
        (r'listen = "127\.0\.0\.1:6080"', f'listen = "127.0.0.1:{ADMIN_PORT}"'),
        (r'level = "info"', 'level = "warn"'),
        (r"max_client_connections = \d+",
         f"max_client_connections = {max(20000, clients + 1000)}"),
    ]
    for pattern, repl in edits:
        text, n = re.subn(pattern, repl, text, count=1)
        if n != 1:
            sys.exit(f"config/rwsplit.toml no longer has {pattern!r}; update conn_scale.py")
    path = os.path.join(tmp, "rwsplit.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def connect(**kw):
    """A client as applications open one: autocommit on (PyMySQL's default of off would pin a
    transaction on the primary), schema app; PyMySQL also sends SET NAMES at login."""
    return pymysql.connect(host="127.0.0.1", port=PORT, user="app", password="app",
                           database="app", autocommit=True, connect_timeout=10,
                           read_timeout=60, write_timeout=60, **kw)


def select_one(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchall()


def start_rwsplit(tmp, config):
    """Starts rwsplit and waits until a client can log in and run a statement."""
    log = open(os.path.join(tmp, "rwsplit.log"), "wb")
    p = subprocess.Popen([os.path.join(ROOT, "target", "release", "rwsplit"), "--config", config],
                         stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        if p.poll() is not None:
            sys.exit(f"rwsplit exited with {p.returncode}:\n{log_tail(tmp)}")
        try:
            conn = connect()
            select_one(conn)
            conn.close()
            return p
        except pymysql.MySQLError as e:
            if time.monotonic() > deadline:
                stop(p)
                sys.exit(f"no login through rwsplit after 30 s: {e}\n{log_tail(tmp)}")
            time.sleep(0.2)


def log_tail(tmp, lines=10):
    path = os.path.join(tmp, "rwsplit.log")
    if not os.path.exists(path):
        return ""
    return "\n".join(open(path, errors="replace").read().splitlines()[-lines:])


def status_kib(pid):
    """VmRSS and VmHWM (peak) in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out["VmRSS"], out["VmHWM"]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def backend_sockets(pid, ports):
    """ESTABLISHED TCP connections of that process to the given remote ports (its own socket
    inodes matched against /proc/PID/net/tcp*): pools and monitor together."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                cols = line.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if cols[3] == "01" and remote_port in ports and cols[9] in inodes:
                    count += 1
    return count


def pool_connections():
    """Open backend connections (in use + idle) over all pools, from the admin API."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORT}/backends", timeout=5) as r:
        backends = json.load(r)
    return sum(b["pool"]["in_use"] + b["pool"]["idle"] for b in backends if b.get("pool"))


def backend_ports(config):
    text = open(config).read()
    return {int(p) for p in re.findall(r'address = "[^"]+:(\d+)"', text)}


# ---------------------------------------------------------------------------------------------
# Phase 1: idle clients


def hold(count, deadline, pipe):
    """Opens `count` clients (each runs SELECT 1), reports, then holds them until told to close."""
    conns, failures, errors = [], 0, []
    for i in range(count):
        if time.monotonic() > deadline:
            failures += count - i
            errors.append("idle phase deadline reached before every client was open")
            break
        try:
            conn = connect()
            select_one(conn)
            conns.append(conn)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            failures += 1
            if len(errors) < KEEP_ERRORS:
                errors.append(f"{type(e).__name__}: {e}")
    pipe.send({"open": len(conns), "failures": failures, "errors": errors})
    try:
        pipe.recv()
    except EOFError:
        pass
    for conn in conns:
        try:
            conn.close()
        except pymysql.Error:
            pass
    pipe.send("closed")


def idle_phase(a, pid, ports):
    """Returns the figures of phase 1; the holders have closed their clients when it returns."""
    ctx = multiprocessing.get_context("fork")
    time.sleep(1)
    rss_before, _ = status_kib(pid)
    cpu_before = cpu_seconds(pid)
    deadline = time.monotonic() + a.idle_timeout
    shares = [a.clients // a.holders + (i < a.clients % a.holders) for i in range(a.holders)]
    holders = []
    t0 = time.monotonic()
    for share in shares:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=hold, args=(share, deadline, child), daemon=True)
        p.start()
        holders.append((p, parent))
    reports = []
    for p, pipe in holders:
        try:
            if not pipe.poll(max(0.0, deadline - time.monotonic()) + 30):
                raise EOFError
            reports.append(pipe.recv())
        except EOFError:
            reports.append({"open": 0, "failures": 0, "errors": ["holder did not report"]})
    open_secs = time.monotonic() - t0
    time.sleep(2)  # let pool returns and allocator settle
    rss_after, peak = status_kib(pid)
    r = {
        "clients": a.clients,
        "open": sum(x["open"] for x in reports),
        "failures": sum(x["failures"] for x in reports),
        "errors": sorted({e for x in reports for e in x["errors"]})[:KEEP_ERRORS],
        "open_seconds": open_secs,
        "login_cpu_ms": (cpu_seconds(pid) - cpu_before) * 1000 / max(1, a.clients),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak": peak,
        "sockets": backend_sockets(pid, ports),
        "pool": pool_connections(),
    }
    for p, pipe in holders:
        try:
            pipe.send("close")
        except OSError:
            pass
    for p, pipe in holders:
        try:
            pipe.poll(60)
        except OSError:
            pass
        p.join(10)
        if p.is_alive():
            p.terminate()
    time.sleep(2)
    r["rss_released"], _ = status_kib(pid)
    return r


# ---------------------------------------------------------------------------------------------
# Phase 2: storm


def storm_worker(seconds, go, results):
    """Loops connect + login + SELECT 1 + close (COM_QUIT) for `seconds` after `go` is set."""
    go.wait()
    end = time.monotonic() + seconds
    cycles, failures, errors = 0, 0, []
    while time.monotonic() < end:
        try:
            conn = connect()
            select_one(conn)
            conn.close()
            cycles += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            failures += 1
            if len(errors) < KEEP_ERRORS:
                errors.append(f"{type(e).__name__}: {e}")
    results.put({"cycles": cycles, "failures": failures, "errors": errors})


def storm_phase(a, pid):
    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=storm_worker, args=(a.seconds, go, results), daemon=True)
               for _ in range(a.workers)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # every worker forked and waiting
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    go.set()
    reports = []
    for _ in workers:
        try:
            reports.append(results.get(timeout=a.seconds + 60))
        except queue.Empty:  # a worker stuck past every client timeout
            reports.append({"cycles": 0, "failures": 0, "errors": ["worker did not report"]})
    elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    for w in workers:
        w.join(5)
        if w.is_alive():
            w.terminate()
    cycles = sum(x["cycles"] for x in reports)
    return {
        "workers": a.workers,
        "seconds": a.seconds,
        "cycles": cycles,
        "cycles_per_s": cycles / elapsed,
        "failures": sum(x["failures"] for x in reports),
        "errors": sorted({e for x in reports for e in x["errors"]})[:KEEP_ERRORS],
        "cpu_s": cpu,
        "cpu_ms_per_cycle": cpu * 1000 / cycles if cycles else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# Report


def mib(kib):
    return f"{kib / 1024:.1f}"


def summary(idle, storm, rss_end):
    per_conn = (idle["rss_after"] - idle["rss_before"]) * 1024 / idle["clients"]
    lines = [
        f"idle: {idle['open']}/{idle['clients']} clients open in {idle['open_seconds']:.1f} s "
        f"({idle['failures']} failed), rwsplit CPU {idle['login_cpu_ms']:.2f} ms per login",
        f"  RSS before {mib(idle['rss_before'])} MiB, after {mib(idle['rss_after'])} MiB, "
        f"peak {mib(idle['peak'])} MiB, {per_conn:.0f} bytes ({per_conn / 1024:.1f} KiB) per "
        f"client; after they closed {mib(idle['rss_released'])} MiB",
        f"  backend connections held: {idle['sockets']} sockets ({idle['pool']} in pools)",
        f"storm: {storm['workers']} workers x {storm['seconds']:g} s: {storm['cycles']} cycles, "
        f"{storm['cycles_per_s']:.0f}/s, {storm['failures']} failed, rwsplit CPU "
        f"{storm['cpu_s']:.2f} s = {storm['cpu_ms_per_cycle']:.3f} ms per cycle",
        f"rwsplit RSS at the end {mib(rss_end[0])} MiB, peak over the run {mib(rss_end[1])} MiB",
    ]
    for phase in (idle, storm):
        lines += [f"  error: {e}" for e in phase["errors"]]
    return "\n".join(lines)


def revision():
    """HEAD's short hash, marked when src/ or the manifest differ from it (read-only git)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                "Cargo.lock"], cwd=ROOT, env=env).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "an unknown revision"
    return f"`{head}`" + (" plus uncommitted changes to src/" if dirty else "")


def section(idle, storm, a):
    per_conn = (idle["rss_after"] - idle["rss_before"]) / idle["clients"]
    method = (
        f"`scripts/conn_scale.sh` wrote this on {datetime.date.today().isoformat()} (rwsplit "
        f"built from {revision()}; same machine as above). {idle['clients']:,} PyMySQL clients, "
        f"opened by {a.holders} processes, log in (schema `app`, autocommit on; PyMySQL sends "
        "`SET NAMES`), run `SELECT 1` once and stay open idle; rwsplit's VmRSS is read before "
        "the first and after the last, when its backend connections are counted too (its "
        "ESTABLISHED sockets to the backends, monitor included; in parentheses those in its "
        f"pools). In the storm, {storm['workers']} processes loop connect + login + `SELECT 1` "
        f"+ `COM_QUIT`; on these {os.cpu_count()} shared cores the Python clients use most of "
        "the CPU, so cycles/s is a floor; CPU is rwsplit's own (utime + stime).")
    if idle["clients"] >= 10000 and idle["failures"] == 0:
        verdict = ("within" if idle["rss_after"] <= 150 * 1024 else "over") + \
            " the issue 5 target (under 150 MiB at 10,000 idle clients)"
    else:
        verdict = "not comparable with the issue 5 target (150 MiB at 10,000 idle clients)"
    result = (f"The whole process is {verdict}. Clients that failed to open: "
              f"{idle['failures']}; RSS after they all closed: {mib(idle['rss_released'])} MiB.")
    return "\n".join([
        HEADING,
        "",
        textwrap.fill(method, width=96),
        "",
        "| clients | RSS before MiB | RSS after MiB | peak MiB | KiB per client | backend connections held |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {idle['open']:,} | {mib(idle['rss_before'])} | {mib(idle['rss_after'])} | "
        f"{mib(idle['peak'])} | {per_conn:.1f} | {idle['sockets']} ({idle['pool']}) |",
        "",
        "| storm workers | seconds | cycles/s | failures | rwsplit CPU ms per cycle |",
        "| --- | --- | --- | --- | --- |",
        f"| {storm['workers']} | {storm['seconds']:g} | {storm['cycles_per_s']:.0f} | "
        f"{storm['failures']} | {storm['cpu_ms_per_cycle']:.3f} |",
        "",
        textwrap.fill(result, width=96),
        "",
    ])


def write_section(path, text):
    """Replaces (or appends) the section after the notes marker. scripts/bench.py rewrites
    everything above the marker and keeps the rest, so both reports survive each other."""
    existing = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if MARKER not in existing:
        existing = existing.rstrip("\n") + "\n\n" + MARKER + "\n"
    head, tail = existing.split(MARKER, 1)
    start = tail.find(HEADING + "\n")
    if start < 0:
        tail = tail.rstrip("\n") + "\n\n" + text
    else:
        nxt = tail.find("\n## ", start + len(HEADING))
        rest = tail[nxt + 1:] if nxt >= 0 else ""
        tail = tail[:start] + text + ("\n" + rest if rest else "")
    with open(path, "w") as f:
        f.write(head + MARKER + tail)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------


def check_fd_limit(clients):
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < clients + FD_MARGIN:
        sys.exit(f"open-files limit {soft} is below {clients + FD_MARGIN} "
                 f"(--clients {clients} + {FD_MARGIN}); raise it (ulimit -n) or use fewer clients")


def main():
    a = parse_args()
    check_fd_limit(a.clients)
    for port in (PORT, ADMIN_PORT):
        if not port_free(port):
            sys.exit(f"port {port} is busy")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(tmp, a.clients)
        rw = start_rwsplit(tmp, config)
        try:
            print(f"rwsplit pid {rw.pid}; opening {a.clients} idle clients", flush=True)
            idle = idle_phase(a, rw.pid, backend_ports(config))
            print(f"storm: {a.workers} workers for {a.seconds:g} s", flush=True)
            storm = storm_phase(a, rw.pid)
            rss_end = status_kib(rw.pid)
        finally:
            stop(rw)
            tail = log_tail(tmp)
    print(summary(idle, storm, rss_end))
    if tail:
        print("rwsplit log (last lines):\n" + tail)
    if not a.no_write:
        write_section(a.out, section(idle, storm, a))


if __name__ == "__main__":
    main()
