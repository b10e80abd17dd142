"""Counts rwsplit's user-space instructions per statement under valgrind's callgrind.

On this shared 2-core machine QPS and CPU time move by 10 % to 30 % between runs, more than
most single changes to rwsplit's own code are worth. An instruction count does not move: the
same build and workload give the same count within about 1 % (how often the runtime parks
and polls still varies a little), so it shows a change of a few percent that no timed run
could. It counts only user space (the kernel's share, the
system calls and wakeups, is most of rwsplit's CPU; see docs/benchmarks.md) and says nothing
about cache misses; it is a check on rwsplit's own work per statement, not a speed figure.

For each case: rwsplit is started under callgrind with instrumentation off, warmed up, then
counted over a fixed number of sysbench events and stopped. Prints one Markdown row per case
(instructions per statement) and the functions with most instructions of their own.

Every process this starts is tracked by PID and stopped by PID.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (scripts/bench.py: topology, config and sysbench helpers)

# Events per case, about 20,000 statements each (14 per read-only event with --skip-trx, 18
# per read-write event, 20 with its BEGIN and COMMIT), by default at 4 client threads: enough
# sessions to multiplex.
CASES = [
    ("oltp_point_select", (), 20000),
    ("oltp_read_only", ("--skip-trx=on",), 1500),
    ("oltp_read_write", (), 1100),
]
WARMUP_EVENTS = 300


def callgrind_control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(workload, threads, mode, extra, events):
    """One counted sysbench run through rwsplit; stops the script if any statement failed (a
    failed statement costs rwsplit less than a served one)."""
    res = bench.parse(bench.sysbench("rwsplit", workload, threads, 600, mode,
                                     (*extra, f"--events={events}")))
    if res["errors"] or not res["queries"]:
        sys.exit(f"{workload} ({mode}): {res['errors']} errors, {res['queries']} statements; "
                 "not counted")
    return res["queries"]


def totals(path):
    try:
        text = open(path).read()
    except OSError as e:
        sys.exit(f"no callgrind profile at {path}: {e}")
    # With instrumentation switched on late, `summary:` stays 0; `totals:` has the count.
    m = re.search(r"^totals: (\d+)", text, re.M)
    if not m:
        sys.exit(f"{path} has no totals line: a truncated profile?")
    return int(m.group(1))


def count(tmp, keep, binary, threads, workload, extra, events, mode, top):
    """Instructions per statement: counted over a short and a long run, each with its clients'
    connects, prepares and quits, and the difference divided by the difference in statements,
    so what a client costs once (more, the more threads) is left out."""
    out = os.path.join(keep or tmp, f"callgrind.{workload}.{mode}")
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}"]
    rw = bench.start_rwsplit(tmp, False, wrapper, binary)
    try:
        run(workload, threads, mode, extra, max(WARMUP_EVENTS, threads))
        callgrind_control(rw.pid, "--instr=on")
        short = run(workload, threads, mode, extra, max(events // 4, threads))
        # Written to `out`.1, and the counters start again from zero.
        callgrind_control(rw.pid, "--dump")
        long = run(workload, threads, mode, extra, events)
        callgrind_control(rw.pid, "--instr=off")
    finally:
        # callgrind writes the rest of its profile, to `out`, when the process exits.
        bench.stop(rw, timeout=120)
    per_stmt = (totals(out) - totals(out + ".1")) / (long - short)
    ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", out],
                         capture_output=True, text=True, check=True).stdout
    funcs = []
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(?!PROGRAM TOTALS)(\S.*)", line)
        if m:
            name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
            # "file:function": file paths hold no colon, Rust paths do.
            funcs.append((int(m.group(1).replace(",", "")) / long,
                          name.split(":", 1)[-1][:110]))
    return long - short, per_stmt, funcs[:top]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", action="append",
                    help="only this sysbench workload (repeatable), e.g. oltp_point_select")
    ap.add_argument("--mode", action="append", choices=["auto", "disable"],
                    help="sysbench --db-ps-mode (default both)")
    ap.add_argument("--top", type=int, default=12, help="functions listed per case")
    ap.add_argument("--threads", type=int, default=4, help="sysbench client threads")
    ap.add_argument("--binary", help="the rwsplit to count (default target/release/rwsplit), "
                    "e.g. a copy of an older build to compare with")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the callgrind profiles here (for callgrind_annotate --tree=caller)")
    a = ap.parse_args()
    if a.threads < 1 or a.top < 0:
        sys.exit("--threads must be at least 1 and --top not negative")
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("instructions.py: stopped by SIGTERM"))
    cases = [c for c in CASES if not a.workload or c[0] in a.workload]
    modes = a.mode or ["auto", "disable"]
    if not bench.free(bench.PORTS["rwsplit"]):
        sys.exit(f"port {bench.PORTS['rwsplit']} is busy")
    rows, tops = [], []
    with bench.sysbench_tables(), tempfile.TemporaryDirectory() as tmp:
        for workload, extra, events in cases:
            for mode in modes:
                stmts, per_stmt, funcs = count(tmp, a.keep, a.binary, a.threads,
                                               workload, extra, events, mode, a.top)
                name = workload + (" " + " ".join(extra) if extra else "")
                rows.append(f"| {name} | {mode} | {stmts} | {per_stmt:,.0f} |")
                print(rows[-1], flush=True)
                tops.append((name, mode, stmts, funcs))
    print(f"\n{a.threads} client threads")
    print("\n| workload | ps | statements (long run less short) | instructions per statement |")
    print("| --- | --- | --- | --- |")
    print("\n".join(rows))
    for name, mode, stmts, funcs in tops:
        print(f"\n{name}, ps {mode}: instructions per statement in the function itself "
              "(long run; its clients' connects included)")
        for ir, fn in funcs:
            print(f"  {ir:8,.0f}  {fn}")


if __name__ == "__main__":
    main()
