"""The lab demo: two LISP sites joined by lispd, built, exercised and torn down in one command.

    sudo .venv/bin/python -m lispd.lab.demo

Builds host A - xTR1 - R - xTR2 - host B in network namespaces, runs lispd on both xTRs with
static map-caches (IPv4 and IPv6 EIDs, IPv4 and IPv6 RLOCs), then shows what an operator would
look at: the map-caches, pings and a checksummed TCP transfer across the tunnel, the counters,
and a few packets captured on the underlay decoded by ``lispd decode``.  Everything is removed
at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from lispd.api.client import request
from lispd.cli.decode import decode_capture
from lispd.lab import Lab, TwoSitePlan, two_site_topology

TRANSFER_BYTES = 10_000_000


def xtr_config(plan: TwoSitePlan, me: int, sock: str) -> str:
    """lispd.conf of xTR ``me``: its own site in the database, the other in the map-cache
    (IPv4 EIDs over the IPv4 underlay, IPv6 EIDs over the IPv6 underlay)."""
    p = plan
    mine = (p.site_a_prefix_v4, p.site_a_prefix_v6, p.xtr1_rloc_v4, p.xtr1_rloc_v6)
    peer = (p.site_b_prefix_v4, p.site_b_prefix_v6, p.xtr2_rloc_v4, p.xtr2_rloc_v6)
    if me == 2:
        mine, peer = peer, mine
    return f"""
[daemon]
name = "xtr{me}"
roles = ["itr", "etr"]
control-socket = "{sock}"

[underlay]
rlocs = ["{mine[2]}", "{mine[3]}"]

[[database-mapping]]
eid-prefix = "{mine[0]}"
rlocs = [{{ address = "{mine[2]}" }}]

[[database-mapping]]
eid-prefix = "{mine[1]}"
rlocs = [{{ address = "{mine[3]}" }}]

[[map-cache]]
eid-prefix = "{peer[0]}"
rlocs = [{{ address = "{peer[2]}" }}]

[[map-cache]]
eid-prefix = "{peer[1]}"
rlocs = [{{ address = "{peer[3]}" }}]
"""


def say(text: str) -> None:
    """A step of the demo."""
    print(f"\n== {text}", flush=True)


def show_map_cache(name: str, sock: str) -> None:
    """Print a daemon's map-cache like ``show lisp map-cache``."""
    print(f"{name} map-cache:")
    for e in request(sock, "map-cache"):
        rlocs = ", ".join(f"{r['address']} (p{r['priority']}/w{r['weight']})" for r in e["rlocs"])
        print(f"  [{e['instance-id']}] {e['eid-prefix']:<22} -> {rlocs or e['action']}")


def transfer(lab: Lab, plan: TwoSitePlan, dst_addr: str) -> str:
    """A checksummed TCP transfer from A to B; returns the result line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = lab.popen(
        plan.host_b,
        [sys.executable, "-m", "lispd.lab.transfer", "serve", dst_addr, "5001"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    server.stdout.readline()
    start = time.monotonic()
    sent = lab.run(
        plan.host_a, sys.executable, "-m", "lispd.lab.transfer", "send", dst_addr, "5001",
        str(TRANSFER_BYTES), timeout=120, env={"PYTHONPATH": env["PYTHONPATH"]},
    ).stdout.split()  # fmt: skip
    elapsed = time.monotonic() - start
    received = server.stdout.readline().split()
    server.wait(timeout=30)
    verdict = "intact" if sent == received else f"MISMATCH sent={sent} received={received}"
    mbps = TRANSFER_BYTES * 8 / elapsed / 1e6
    size = f"{TRANSFER_BYTES / 1e6:.0f} MB"
    return f"{size} to {dst_addr} in {elapsed:.2f} s ({mbps:.0f} Mbit/s), {verdict}"


def main() -> int:
    """Run the demo; exit 0 when every step worked."""
    if os.geteuid() != 0:
        print("the demo builds network namespaces: run it as root", file=sys.stderr)
        return 2
    plan = two_site_topology()
    ok = True
    say("building A - xTR1 - R - xTR2 - B in network namespaces")
    with Lab(plan.topology) as lab:
        print(f"namespaces: {' '.join(lab.namespaces())}")
        reached = lab.ping(plan.host_a, plan.host_b_v4, wait=0.5)
        print(f"A -> B before lispd runs: {'reachable?!' if reached else 'unreachable'}")
        socks = {n: str(lab.workdir / f"xtr{n}.sock") for n in (1, 2)}
        say("starting lispd on xTR1 and xTR2")
        for n, node in ((1, plan.xtr1), (2, plan.xtr2)):
            lab.start_lispd(node, xtr_config(plan, n, socks[n]))
            print(f"xtr{n}: ready")
        for n in (1, 2):
            show_map_cache(f"xtr{n}", socks[n])
        say("traffic across the LISP tunnel")
        with lab.capture(plan.r, plan.r_xtr2_if, "udp port 4341") as cap:
            for dst in (plan.host_b_v4, plan.host_b_v6):
                good = lab.ping(plan.host_a, dst, count=3)
                ok &= good
                print(f"ping A -> {dst}: {'ok' if good else 'FAILED'}")
        for dst in (plan.host_b_v4, plan.host_b_v6):
            line = transfer(lab, plan, dst)
            ok &= "intact" in line
            print(f"TCP {line}")
        say("what crossed the underlay (R's link to xTR2), decoded by lispd decode")
        with open(cap.path, "rb") as fh:
            for obj in list(decode_capture(fh.read()))[:4]:
                header = obj.get("message", {})
                inner = obj.get("inner") or {}
                inner_ip = inner.get("ip", {})
                print(
                    f"  {obj['src']}:{obj['sport']} -> {obj['dst']}:{obj['dport']} "
                    f"LISP nonce={header.get('nonce')} iid={header.get('instance_id')} "
                    f"inner {inner_ip.get('src')} -> {inner_ip.get('dst')}"
                )
        say("counters")
        for n in (1, 2):
            print(f"xtr{n}: {json.dumps(request(socks[n], 'stats'))}")
        say("tearing down")
    print(f"\ndemo {'succeeded' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
