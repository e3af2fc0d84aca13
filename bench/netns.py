"""Two real network hosts on one machine: Linux network namespaces joined by a veth pair, each
with its own address, and a suite's data-parallel training run across them through the cluster
file, exactly as a user runs it on two boxes (`tlbench run SUITE --cluster FILE --task-index I`
on each), each host pinned to its own core and locking only that core.

    python -m bench.netns SUITE [--out DIR] [--backend B]...      (make two-hosts)

Needs root and iproute2 (`ip netns`); `available()` says why not where they are missing. The
namespaces and the veth pair are removed on the way out, however the run ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUBNET = "10.231.{}.{}/24"  # a private range no cloud VM's own network is likely to use
ETC_NETNS = Path("/etc/netns")
PORT = 29500  # torchrun's default; each namespace is a fresh network stack, so it is free


def available() -> str | None:
    """None when two namespaces can be made here, else why not (and the fix)."""
    if shutil.which("ip") is None:
        return "no `ip` command: install iproute2 (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root, or in CI)"
    probe = f"tlb-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@contextlib.contextmanager
def two_hosts() -> Iterator[list[tuple[str, str]]]:
    """Two namespaces on one veth link: [(namespace, its address)] for host 0 and host 1."""
    tag = str(os.getpid())
    net = os.getpid() % 250 + 1  # processes side by side get different subnets
    hosts = [(f"tlb{tag}-h{i}", SUBNET.format(net, i + 1)) for i in range(2)]
    links = [f"tlb{tag}v{i}"[:15] for i in range(2)]  # interface names: at most 15 characters
    try:
        for name, _ in hosts:
            _ip("netns", "add", name)
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for (name, address), link in zip(hosts, links, strict=True):
            # `ip netns exec` mounts /etc/netns/NAME/hosts on /etc/hosts: there, as on a real
            # host, the machine's hostname resolves to the host's own address (Gloo under JAX
            # advertises that address to its peers)
            etc = ETC_NETNS / name
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{address.split('/')[0]} "
                                       f"{socket.gethostname()}\n")
            _ip("link", "set", link, "netns", name)
            _ip("-n", name, "addr", "add", address, "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield [(name, address.split("/")[0]) for name, address in hosts]
    finally:
        for name, _ in hosts:  # deleting a namespace deletes its end of the veth pair, and so both
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def run_across(suite: str, out: Path, extra: list[str] = (), python: str = sys.executable,
               cwd: str | None = None, timeout: float | None = None) -> list[tuple[int, str]]:
    """The suite's runs with one worker in each namespace (cores 0 and 1): each host's exit code
    and output."""
    out.mkdir(parents=True, exist_ok=True)
    with two_hosts() as hosts, tempfile.TemporaryDirectory(prefix="tlbench-hosts-") as tmp:
        cluster = Path(tmp) / "cluster.json"
        cluster.write_text(json.dumps({"worker": [f"{addr}:{PORT}" for _, addr in hosts]}))
        procs = [subprocess.Popen(
            ["ip", "netns", "exec", name, python, "-m", "bench", "run", suite, "--cluster",
             str(cluster), "--task-index", str(i), "--placement", f"cores:{i}", "--out",
             str(out / f"host{i}"), *extra], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True) for i, (name, _) in enumerate(hosts)]
        try:
            texts = [p.communicate(timeout=timeout)[0] for p in procs]
            return [(p.returncode, text) for p, text in zip(procs, texts, strict=True)]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netns", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--out", default="results/two-hosts")
    parser.add_argument("--backend", action="append", default=[])
    args = parser.parse_args(argv)
    why = available()
    if why:
        print(f"tlbench: cannot make two network hosts here: {why}", file=sys.stderr)
        return 2
    extra = [a for b in args.backend for a in ("--backend", b)]
    codes = []
    for i, (code, text) in enumerate(run_across(args.suite, Path(args.out), extra)):
        print(f"---- host {i} (exit {code}) ----\n{text}")
        codes.append(code)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
