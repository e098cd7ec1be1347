"""Shares of a folded profile (inferno-collapse-perf --all): by thread, by
where a sample was (kernel or not), and the inclusive share of each part of
the request path that a frame's name tells. Used by bench/profile.sh."""

import collections
import sys

# (label, substrings any one of which marks a frame as the part's)
PARTS = [
    ("SQLite writer (usage records, ledger, daily totals)", ["sqlx_sqlite::", "sqlite3"]),
    ("crash journal", ["billing::journal"]),
    ("upstream client (hyper's, reqwest's)", ["reqwest::", "hyper_util::client", "hyper::proto::h1::dispatch::Client", "hyper::client::"]),
    ("server side of hyper (client connections)", ["hyper::proto::h1::dispatch::Server", "hyper::server::"]),
    ("JSON (serde_json)", ["serde_json::"]),
    ("billing (meter, holds, settlement queue)", ["gateway::billing::"]),
    ("pipeline steps", ["gateway::pipeline::"]),
    ("relay (send, transform)", ["gateway::relay::"]),
    ("allocator (mimalloc)", ["mi_malloc", "mi_free", "_mi_", "mi_page"]),
    ("memcpy/memmove", ["memmove", "memcpy"]),
    ("task switches and wake-ups (kernel)", ["finish_task_switch", "try_to_wake_up", "futex_", "__schedule"]),
    ("socket writes and reads", ["tcp_sendmsg", "tcp_recvmsg"]),
]


def main(path):
    stacks = []
    for line in open(path):
        frames, _, count = line.rstrip("\n").rpartition(" ")
        if frames:
            stacks.append((frames.split(";"), int(count)))
    total = sum(c for _, c in stacks) or 1

    def share(n):
        return f"{100 * n / total:5.1f} %"

    threads = collections.Counter()
    kernel = 0
    for frames, count in stacks:
        threads[frames[0]] += count
        if frames[-1].endswith("_[k]"):
            kernel += count
    print(f"weight (cpu-clock ns sampled): {total}")
    for name, count in threads.most_common(6):
        print(f"{share(count)}  thread {name}")
    print(f"{share(kernel)}  in the kernel (self)")
    for label, marks in PARTS:
        count = sum(c for frames, c in stacks if any(m in f for f in frames for m in marks))
        print(f"{share(count)}  {label} (inclusive)")


if __name__ == "__main__":
    main(sys.argv[1])
