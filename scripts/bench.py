"""Runs the interleaved sysbench comparison (see scripts/bench.sh) and writes the report.

Every process this starts (HAProxy, rwsplit) is tracked by PID and stopped by PID.
"""
import argparse
import contextlib
import os
import platform
import re
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")
PORTS = {"direct": 3306, "haproxy": 6040, "haproxy-replicas": 6041, "rwsplit": 6035}
# Where each HAProxy forwards: all to the primary (the floor any proxy is compared to), or, for
# workloads that only read, round-robin over the two replicas (a forwarder that spreads the
# reads as rwsplit does, with no parsing: like against like where spreading costs).
HAPROXY = {"haproxy": ("primary",), "haproxy-replicas": ("replica1", "replica2")}
TOPOLOGY = os.path.join(ROOT, "scripts", "topology.sh")
SERVERS = ("primary", "replica1", "replica2")
TOPO_DIR = os.environ.get("RWSPLIT_TOPO_DIR", "/tmp/rwsplit-topology")
TCP = {"primary": "127.0.0.1:3306", "replica1": "127.0.0.1:3307", "replica2": "127.0.0.1:3308"}


# Seconds of unmeasured load on each target before the first case.
WARM_UP_SECONDS = 3


def backend_address(name, sockets):
    """Where the proxies reach a server: its TCP port, or with --backend-socket its Unix socket."""
    return os.path.join(TOPO_DIR, name, "mysqld.sock") if sockets else TCP[name]


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not free(port):
            return
        time.sleep(0.1)
    sys.exit(f"nothing listens on {port} after {timeout} s")


def stop(p, timeout=15):
    """SIGTERM to process `p` (by its PID), SIGKILL if it has not ended in `timeout` s."""
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wait_started(p, port, timeout=20):
    """Waits for `p` to listen on `port`; stops it if it does not."""
    try:
        wait_port(port, timeout)
    except BaseException:
        stop(p)
        raise


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def autogroup(pid):
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return f.read().split()[0]
    except OSError:
        return None


def share_scheduler_group():
    """Restarts the topology's servers in this session if they run in another one.

    With kernel.sched_autogroup_enabled = 1 the scheduler shares the CPU between sessions
    first. Servers started from another terminal would get half of the two cores to
    themselves and leave sysbench and the proxy the other half: measured here, that made
    rwsplit's CPU per statement 1.4x to 1.9x HAProxy's at oltp_read_only, 32 threads,
    against 1.1x to 1.3x with every process in one group.
    """
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            if f.read().strip() != "1":
                return
    except OSError:
        return
    topo = os.environ.get("RWSPLIT_TOPO_DIR", "/tmp/rwsplit-topology")
    mine = autogroup("self")
    others = set()
    for name in SERVERS:
        try:
            with open(os.path.join(topo, name, "mariadbd.pid")) as f:
                others.add(autogroup(f.read().strip()))
        except OSError:
            pass
    if others <= {mine}:
        return
    print("The servers run in another scheduler group (session); restarting them in this one.",
          flush=True)
    subprocess.run([TOPOLOGY, "down"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([TOPOLOGY, "up"], check=True, stdout=subprocess.DEVNULL)


def set_userstat(values):
    """Sets `userstat` on each server (a dict by name) and returns what each had.

    The test topology turns it on (the routing tests read the servers' USER_STATISTICS).
    It costs every statement a server-wide mutex (handler::update_global_index_stats), which
    contends as more server threads run at once; MariaDB's default is off, so the benchmark
    runs with it off and puts it back afterwards.
    """
    before = {}
    try:
        for name, want in values.items():
            r = subprocess.run([TOPOLOGY, "sql", name, "SELECT @@userstat"],
                               capture_output=True, text=True, check=True)
            before[name] = r.stdout.strip()
            subprocess.run([TOPOLOGY, "sql", name, f"SET GLOBAL userstat = {want}"], check=True)
    except BaseException:
        # Undo what was set before the failure: the tests need `userstat` as it was.
        for name, was in before.items():
            subprocess.run([TOPOLOGY, "sql", name, f"SET GLOBAL userstat = {was}"])
        raise
    return before


@contextlib.contextmanager
def sysbench_tables():
    """For the block: `userstat` off on every server and sysbench's 4 tables fresh on the
    primary and on the replicas; after it, however it ends, `userstat` as it was and the tables
    dropped."""
    userstat = set_userstat({name: "0" for name in SERVERS})
    try:
        sysbench("direct", "oltp_read_write", 4, 1, "auto", action="cleanup")
        sysbench("direct", "oltp_read_write", 4, 1, "auto", action="prepare")
        subprocess.run([TOPOLOGY, "wait-sync"], check=True)
        yield
    finally:
        try:
            set_userstat(userstat)
        finally:
            sysbench("direct", "oltp_read_write", 4, 1, "auto", action="cleanup")


def start_haproxy(tmp, sockets, target="haproxy"):
    servers = "".join(f"    server {name} {backend_address(name, sockets)}\n"
                      for name in HAPROXY[target])
    cfg = os.path.join(tmp, f"{target}.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen mysql
    bind 127.0.0.1:{PORTS[target]}
    balance roundrobin
{servers}""")
    # In the foreground, as this script's child: in the same session (and so the same
    # scheduler autogroup) as sysbench, the servers and rwsplit. Daemonized (-D) it would sit
    # alone in its own group and, measured here, spend 1.3x to 1.7x the CPU per statement.
    p = subprocess.Popen(["haproxy", "-f", cfg, "-db"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_started(p, PORTS[target])
    return p


def start_rwsplit(tmp, sockets, wrapper=(), binary=None):
    text = open(os.path.join(ROOT, "config", "rwsplit.toml")).read()
    for name in SERVERS:
        if f'address = "{TCP[name]}"' not in text:
            sys.exit(f"config/rwsplit.toml no longer has {name} at {TCP[name]}")
        text = text.replace(f'address = "{TCP[name]}"', f'address = "{backend_address(name, sockets)}"')
    text = text.replace('listen = "127.0.0.1:6033"', f'listen = "127.0.0.1:{PORTS["rwsplit"]}"')
    text = text.replace('listen = "127.0.0.1:6080"', 'listen = "off"')
    cfg = os.path.join(tmp, "rwsplit.toml")
    with open(cfg, "w") as f:
        f.write(text)
    binary = binary or os.path.join(ROOT, "target", "release", "rwsplit")
    p = subprocess.Popen([*wrapper, binary, "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    # Under valgrind, rwsplit starts about fifty times slower.
    wait_started(p, PORTS["rwsplit"], timeout=120 if wrapper else 20)
    return p


def sysbench(target, workload, threads, seconds, ps_mode, extra=(), action="run"):
    cmd = ["sysbench", workload, "--db-driver=mysql", "--mysql-host=127.0.0.1",
           f"--mysql-port={PORTS[target]}", "--mysql-user=app", "--mysql-password=app",
           "--mysql-db=app", "--tables=4", "--table-size=10000", f"--threads={threads}",
           f"--time={seconds}", f"--db-ps-mode={ps_mode}", "--histogram=on",
           "--mysql-ignore-errors=all", *extra, action]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if r.returncode != 0:
        sys.exit(f"sysbench failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def parse(out):
    queries = int(re.search(r"queries:\s+(\d+)", out).group(1))
    qps = float(re.search(r"queries:\s+\d+\s+\(([\d.]+) per sec", out).group(1))
    errors = int(re.search(r"ignored errors:\s+(\d+)", out).group(1))
    hist = [(float(v), int(c)) for v, c in
            re.findall(r"^\s+([\d.]+)\s+\|[\s*]*\s(\d+)\s*$", out, re.M)]
    total = sum(c for _, c in hist)

    def pct(p):
        seen = 0
        for v, c in hist:
            seen += c
            if seen >= total * p:
                return v
        return float("nan")
    return {"queries": queries, "qps": qps, "errors": errors,
            "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)}


def median_case(rounds):
    """One case from its rounds: each figure's median per target, plus the lowest and highest
    rwsplit/HAProxy (and rwsplit/HAProxy-replicas) QPS ratio of a round (rounds of one case
    ran close together)."""
    case = {}
    for target in rounds[0]:
        case[target] = {k: round(statistics.median(r[target][k] for r in rounds), 3)
                        for k in rounds[0][target]}

    def spread(against):
        ratios = [r["rwsplit"]["qps"] / r[against]["qps"] for r in rounds]
        return (min(ratios), max(ratios), len(ratios))

    case["rwsplit"]["spread"] = spread("haproxy")
    if "haproxy-replicas" in rounds[0]:
        case["rwsplit"]["spread_replicas"] = spread("haproxy-replicas")
    return case


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--time", type=int, default=10)
    ap.add_argument("--out", help="the report (default docs/benchmarks.md, with "
                    "--backend-socket docs/benchmarks-socket.md)")
    ap.add_argument("--backend-socket", action="store_true",
                    help="the proxies (both HAProxys and rwsplit) reach the servers by their "
                         "Unix sockets (a proxy on the database host); clients still reach the "
                         "proxies and direct by TCP")
    ap.add_argument("--workload", action="append",
                    help="only this sysbench workload (repeatable), e.g. oltp_point_select")
    ap.add_argument("--threads", type=int, action="append", help="only these thread counts")
    ap.add_argument("--no-write", action="store_true", help="print only; leave --out alone")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds per case, the targets in turn each round; the report "
                         "gives each figure's median and the spread of rwsplit/HAProxy")
    a = ap.parse_args()
    a.out = a.out or os.path.join(ROOT, "docs", "benchmarks-socket.md" if a.backend_socket
                                  else "benchmarks.md")
    # Stopped early (Ctrl-C, or SIGTERM; a background job ignores SIGINT unless told): unwind,
    # so the `finally` below stops HAProxy and rwsplit, drops the tables and puts userstat back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench.py: stopped by SIGTERM"))
    workloads = [("oltp_point_select", ()), ("oltp_read_only", ("--skip-trx=on",)),
                 ("oltp_read_write", ())]
    if a.workload:
        workloads = [w for w in workloads if w[0] in a.workload]
    threads = a.threads or ([32] if a.quick else [8, 32, 128])
    modes = ["auto"] if a.quick else ["auto", "disable"]
    for port in (PORTS["haproxy"], PORTS["haproxy-replicas"], PORTS["rwsplit"]):
        if not free(port):
            sys.exit(f"port {port} is busy")
    share_scheduler_group()
    with sysbench_tables(), tempfile.TemporaryDirectory() as tmp:
        procs = [start_haproxy(tmp, a.backend_socket)]
        try:
            procs.append(start_haproxy(tmp, a.backend_socket, "haproxy-replicas"))
            procs.append(start_rwsplit(tmp, a.backend_socket))
            pids = {"haproxy": procs[0].pid, "haproxy-replicas": procs[1].pid,
                    "rwsplit": procs[2].pid}
            # Unmeasured warm-up of every target: the first case otherwise meets cold pools,
            # caches and branch predictors (a full run's first case, 1 thread, once showed
            # rwsplit +77 us over direct where a rerun showed +36 to +43). Point selects read
            # only, so the HAProxy over the replicas may take them too.
            for target in ("direct", "haproxy", "haproxy-replicas", "rwsplit"):
                sysbench(target, "oltp_point_select", 4, WARM_UP_SECONDS, "auto")
            rows = []
            for wl, extra in workloads:
                # Point selects at 1 thread too: the latency the proxy hop adds, unloaded.
                one = wl == "oltp_point_select" and not a.quick and not a.threads
                for t in ([1] if one else []) + threads:
                    for mode in modes:
                        rounds = []
                        for n in range(max(a.repeat, 1)):
                            case = {}
                            # Each round starts one target later: the run after another one
                            # inherits its wake (caches, the scheduler), so no target always
                            # comes first or last. HAProxy over the replicas only where the
                            # workload only reads (it would send writes to a replica).
                            order = ("direct", "haproxy") + (
                                ("haproxy-replicas",) if wl != "oltp_read_write" else ()
                            ) + ("rwsplit",)
                            order = order[n % len(order):] + order[:n % len(order)]
                            for target in order:
                                pid = pids.get(target)
                                before = cpu_seconds(pid) if pid else 0.0
                                res = parse(sysbench(target, wl, t, a.time, mode, extra))
                                if pid:
                                    res["cpu_per_10k"] = ((cpu_seconds(pid) - before)
                                                          / res["queries"] * 10000)
                                case[target] = res
                                cpu = (f" cpu {res['cpu_per_10k']:.3f} s/10k"
                                       if "cpu_per_10k" in res else "")
                                print(f"{wl} threads={t} ps={mode} round={n + 1} {target}: "
                                      f"{res['qps']:.0f} qps p50 {res['p50']} ms "
                                      f"p99 {res['p99']} ms errors {res['errors']}{cpu}",
                                      flush=True)
                            rounds.append(case)
                        rows.append((wl + (" --skip-trx=on" if extra else ""), t, mode,
                                     median_case(rounds)))
            rss = {"rwsplit": peak_rss_kib(pids["rwsplit"]),
                   "haproxy": peak_rss_kib(pids["haproxy"])}
        finally:
            for p in procs:
                stop(p)
    if a.no_write:
        print(f"peak RSS: {rss}")
    else:
        write_report(a, rows, rss)


def write_report(a, rows, rss):
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {os.cpu_count()} cores ({model.group(1) if model else platform.machine()}), "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
        f"{platform.system()} {platform.release()}. MariaDB primary and two replicas, sysbench, "
        "HAProxy and rwsplit all share these cores, in one scheduler group (session), with "
        "`userstat` off on the servers. Each case runs direct, HAProxy (and, for workloads "
        "that only read, HAProxy over the replicas) and rwsplit "
        f"back to back for {a.time} s each"
        + (f", {a.repeat} rounds in turn; each figure is the median of its rounds"
           if a.repeat > 1 else "")
        + f", after {WARM_UP_SECONDS} s of unmeasured point selects through each"
        + "; compare only within a row.",
        "",
        "`scripts/bench.sh" + (" --quick" if a.quick else "")
        + (" --backend-socket" if a.backend_socket else "") + "` wrote this. `haproxy` forwards "
        "everything to the primary; `haproxy-replicas` (workloads that only read) forwards "
        "each connection to one of the two replicas in turn, spreading the reads as rwsplit "
        "does but parsing nothing; rwsplit sends reads to the replicas, with "
        "`config/rwsplit.toml` as shipped but for its ports (its `info` logs included). "
        + ("The proxies reach the servers by their Unix sockets (clients reach the proxies, and "
           "the server directly, by TCP). " if a.backend_socket else "")
        + "Latencies in ms "
        "(from sysbench's histogram); CPU is seconds of process time per 10,000 statements.",
        "",
        "| workload | threads | ps | target | QPS | p50 | p95 | p99 | errors | CPU s/10k | rwsplit/direct | rwsplit/HAProxy | rwsplit/HAProxy-replicas | CPU rwsplit/HAProxy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    if a.repeat > 1:
        lines[-2] = lines[-2] + " rwsplit/HAProxy by round | rwsplit/HAProxy-replicas by round |"
        lines[-1] = lines[-1] + " --- | --- |"

    def by_round(spread):
        lo, hi, n = spread
        return f" {lo:.2f} to {hi:.2f} ({n} rounds) |"
    for wl, t, mode, case in rows:
        for target in ("direct", "haproxy", "haproxy-replicas", "rwsplit"):
            if target not in case:
                continue
            r = case[target]
            ratio_d = ratio_h = ratio_s = ratio_c = ""
            if target == "rwsplit":
                ratio_d = f"{r['qps'] / case['direct']['qps']:.2f}"
                ratio_h = f"{r['qps'] / case['haproxy']['qps']:.2f}"
                if "haproxy-replicas" in case:
                    ratio_s = f"{r['qps'] / case['haproxy-replicas']['qps']:.2f}"
                ratio_c = f"{r['cpu_per_10k'] / case['haproxy']['cpu_per_10k']:.2f}"
            cpu = f"{r['cpu_per_10k']:.3f}" if "cpu_per_10k" in r else ""
            line = (f"| {wl} | {t} | {mode} | {target} | {r['qps']:.0f} | {r['p50']} | "
                    f"{r['p95']} | {r['p99']} | {r['errors']:.0f} | {cpu} | {ratio_d} | {ratio_h} | "
                    f"{ratio_s} | {ratio_c} |")
            if a.repeat > 1:
                line += by_round(r["spread"]) if target == "rwsplit" else " |"
                line += (by_round(r["spread_replicas"])
                         if target == "rwsplit" and "spread_replicas" in r else " |")
            lines.append(line)
    lines += ["", f"Peak RSS over the run: rwsplit {rss['rwsplit'] / 1024:.1f} MiB, "
              f"HAProxy {rss['haproxy'] / 1024:.1f} MiB.", ""]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    existing = open(a.out).read() if os.path.exists(a.out) else ""
    marker = "<!-- notes -->"
    notes = existing[existing.index(marker):] if marker in existing else marker + "\n"
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n" + notes)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
