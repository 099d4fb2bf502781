"""Unit tests of lispd.io.routes without root: the rules lispd wants for each role, and
KernelRouting against a fake netlink socket (it removes what an earlier run of ours left and
nothing else, installs and withdraws only what differs, and removes exactly its own on close).
The namespace tests (tests/netns/test_routing.py) run the same against a real kernel."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_network
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from lispd.io.routes import (
    FIB_RULE_INVERT,
    FR_ACT_GOTO,
    FR_ACT_NOP,
    FR_ACT_TO_TBL,
    KernelRouting,
    RoutingPolicy,
    Rule,
    wanted_rules,
)

POLICY = RoutingPolicy(table=4341, priority=4340, protocol=44)
TUN = 7
V4, V6 = socket.AF_INET, socket.AF_INET6


class Msg(dict[str, Any]):
    """A route or rule message as pyroute2 returns it: fields by key, attributes by get_attr."""

    def __init__(self, fields: dict[str, Any], attrs: dict[str, Any]) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def rule_msg(family: int, priority: int, protocol: int, table: int = 0, **attrs: Any) -> Msg:
    fields = {"family": family, "action": FR_ACT_TO_TBL, "flags": 0, "table": table, "src_len": 0}
    if "FRA_SRC" in attrs:
        fields["src_len"] = 24
    return Msg(fields, {"FRA_PRIORITY": priority, "FRA_PROTOCOL": protocol, **attrs})


def route_msg(dst: str, table: int, proto: int, oif: int | None = TUN, kind: int = 1) -> Msg:
    net = ip_network(dst)
    fields = {"dst_len": net.prefixlen, "proto": proto, "table": table, "type": kind}
    return Msg(fields, {"RTA_DST": str(net.network_address), "RTA_OIF": oif, "RTA_TABLE": table})


class FakeIPRoute:
    """Just enough of pyroute2's IPRoute: dumps of rules and routes, and a log of changes."""

    def __init__(self, rules: list[Msg] = (), routes: list[Msg] = ()) -> None:  # type: ignore[assignment]
        self.rule_dump = list(rules)
        self.route_dump = list(routes)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def get_rules(self, family: int) -> list[Msg]:
        return [m for m in self.rule_dump if m["family"] == family]

    def get_routes(self, family: int, table: int) -> list[Msg]:
        v = 4 if family == V4 else 6
        return [
            m
            for m in self.route_dump
            if m["table"] == table and ip_network(m.get_attr("RTA_DST")).version == v
        ]

    def rule(self, command: str, **fields: Any) -> None:
        self.calls.append(("rule", command, fields))

    def route(self, command: str, **fields: Any) -> None:
        self.calls.append(("route", command, fields))

    def close(self) -> None:
        self.calls.append(("close", "", {}))


def routing(ipr: FakeIPRoute, *, itr: bool = True, pitr: bool = False) -> KernelRouting:
    """A KernelRouting on TUN ``lisp0`` talking to ``ipr``: the real constructor's work, minus
    opening netlink."""
    kr = KernelRouting.__new__(KernelRouting)
    kr._worker = ThreadPoolExecutor(max_workers=1)
    kr._init_queue()
    kr.ipr = ipr  # type: ignore[assignment]
    kr.ifname, kr.ifindex, kr.policy = "lisp0", TUN, POLICY
    kr.itr, kr.pitr = itr, pitr
    kr.routes, kr.throws, kr.rules = set(), set(), []
    kr.remove_leftovers()
    kr.set_local_prefixes(())
    return kr


def test_an_itr_looks_up_lispd_table_only_from_its_local_eid_prefixes() -> None:
    prefixes = [ip_network("198.51.100.0/24"), ip_network("2001:db8:1::/48")]
    rules = wanted_rules(POLICY, "lisp0", prefixes, itr=True, pitr=False)
    assert Rule(V4, 4341, table=4341, source=prefixes[0]) in rules
    assert Rule(V6, 4341, table=4341, source=prefixes[1]) in rules
    # What comes out of the TUN skips lispd's rules; the last one is a nop to land on.
    for family in (V4, V6):
        assert Rule(family, 4340, FR_ACT_GOTO, iifname="lisp0", goto=4343) in rules
        assert Rule(family, 4343, FR_ACT_NOP) in rules
    # No rule without a source: the router's own traffic never meets the table.
    assert all(r.source is not None for r in rules if r.action == FR_ACT_TO_TBL)
    assert {r.priority for r in rules} <= set(range(4340, 4344))


def test_a_pitr_looks_up_lispd_table_for_what_it_forwards_not_what_it_sends() -> None:
    rules = wanted_rules(POLICY, "lisp0", [], itr=False, pitr=True)
    forwarded = [r for r in rules if r.action == FR_ACT_TO_TBL]
    assert forwarded == [
        Rule(V4, 4342, table=4341, iifname="lo", invert=True),
        Rule(V6, 4342, table=4341, iifname="lo", invert=True),
    ]
    assert "not from all iif lo lookup 4341" in forwarded[0].describe()
    assert wanted_rules(POLICY, "lisp0", [ip_network("192.0.2.0/24")], False, False) == []


def test_leftovers_of_ours_go_and_nothing_else_is_touched() -> None:
    ipr = FakeIPRoute(
        rules=[
            rule_msg(V4, 0, 2, table=255),  # the kernel's local rule
            rule_msg(V4, 4341, 44, table=4341, FRA_SRC="198.51.100.0"),  # ours, left behind
            rule_msg(V4, 4341, 4, table=4341),  # an admin's rule at our priority: not ours
            rule_msg(V4, 100, 44, table=4341),  # our protocol, another priority: not ours
            rule_msg(V6, 4343, 44),  # ours (the nop)
            rule_msg(V4, 32766, 2, table=254),
        ],
        routes=[
            route_msg("0.0.0.0/0", 4341, 44),  # ours, on a persistent TUN
            route_msg("198.51.100.0/24", 4341, 44, oif=None, kind=9),  # our throw route
            route_msg("203.0.113.0/24", 4341, 4),  # an admin's route in our table: kept
        ],
    )
    kr = routing(ipr)
    deleted = [(kind, f) for kind, cmd, f in ipr.calls if cmd == "del"]
    assert [f["priority"] for kind, f in deleted if kind == "rule"] == [4341, 4343]
    assert [f["dst"] for kind, f in deleted if kind == "route"] == [
        "0.0.0.0/0",
        "198.51.100.0/24",
    ]
    assert all(f["proto"] == 44 for kind, f in deleted if kind == "route")
    assert kr.rules  # and the base rules are in


def test_local_prefixes_change_only_what_differs_and_close_removes_exactly_ours() -> None:
    ipr = FakeIPRoute()
    kr = routing(ipr)
    a, b = ip_network("198.51.100.0/25"), ip_network("198.51.100.128/25")
    kr.set_local_prefixes([a])
    kr.add(ip_network("0.0.0.0/0"))
    ipr.calls.clear()
    kr.set_local_prefixes([b])
    changes = [(kind, cmd, f.get("dst") or f.get("src")) for kind, cmd, f in ipr.calls]
    assert changes == [
        ("route", "del", str(a)),
        ("route", "replace", str(b)),
        ("rule", "del", "198.51.100.0"),
        ("rule", "add", "198.51.100.128"),
    ]
    throw = ipr.calls[1][2]
    assert throw["type"] == "throw" and throw["table"] == 4341 and throw["proto"] == 44
    ipr.calls.clear()
    kr.close()
    removed = [(kind, cmd) for kind, cmd, _f in ipr.calls]
    assert removed.count(("route", "del")) == 2  # the default route and the throw
    assert removed.count(("rule", "del")) == 5  # goto and nop per family, one from-prefix
    assert ("close", "") in removed
    assert all(f.get("table", 4341) == 4341 for _k, cmd, f in ipr.calls if cmd == "del")


def test_the_routes_to_the_tun_go_to_lispd_table_under_lispd_protocol() -> None:
    ipr = FakeIPRoute()
    kr = routing(ipr, itr=False, pitr=True)
    kr.add(ip_network("::/0"))
    (_kind, cmd, fields) = ipr.calls[-1]
    assert cmd == "replace"
    assert fields == {
        "dst": "::/0",
        "oif": TUN,
        "family": V6,
        "table": 4341,
        "proto": 44,
    }
    kr.remove(ip_network("2001:db8::/32"))  # never installed: nothing happens
    assert ipr.calls[-1][1] == "replace"
    pitr_rules = [f for k, c, f in ipr.calls if k == "rule" and f["flags"] == FIB_RULE_INVERT]
    assert len(pitr_rules) == 2 and all(f["iifname"] == "lo" for f in pitr_rules)


@pytest.mark.parametrize("table", [253, 254, 255])
def test_the_kernel_tables_are_refused_with_key_and_line(table: int) -> None:
    from lispd.config import ConfigError, parse_config

    text = (
        '[daemon]\nroles = ["itr", "etr"]\n[tun]\nroute-table = '
        f'{table}\n[underlay]\nrlocs = ["192.0.2.1"]\n'
        '[[database-mapping]]\neid-prefix = "198.51.100.0/24"\n'
        'rlocs = [{ address = "192.0.2.1" }]\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "x.conf")
    assert "x.conf:4: tun.route-table:" in str(err.value), err.value
    assert "lispd needs a table of its own" in str(err.value)


def test_the_rules_of_a_live_lispd_on_another_tun_are_not_taken_as_leftovers() -> None:
    """Another lispd with the same table and priorities: its goto rule names its TUN, which
    exists.  Refuse (nothing removed) instead of wiping its routing."""
    ipr = FakeIPRoute(rules=[rule_msg(V4, 4340, 44, FRA_IIFNAME="lisp9")])
    ipr.link_lookup = lambda ifname: [9] if ifname == "lisp9" else []  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="in use by the lispd of TUN lisp9"):
        routing(ipr)
    assert not [c for c in ipr.calls if c[1] == "del"]
    # Its TUN gone (the other lispd was killed): the rule is a leftover like any other.
    ipr.link_lookup = lambda ifname: []  # type: ignore[attr-defined]
    routing(ipr)
    assert [f["priority"] for _k, cmd, f in ipr.calls if cmd == "del"] == [4340]


class GatedIPRoute(FakeIPRoute):
    """A FakeIPRoute whose changes wait for ``gate`` (a slow kernel) and fail for the
    prefixes in ``refuse``, as the kernel refuses with a NetlinkError."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.refuse: set[str] = set()

    def route(self, command: str, **fields: Any) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        if fields.get("dst") in self.refuse and command != "del":
            raise NetlinkError(errno.EEXIST, "File exists")
        super().route(command, **fields)

    def rule(self, command: str, **fields: Any) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        if fields.get("src") in self.refuse and command == "add":
            raise NetlinkError(errno.EINVAL, "Invalid argument")
        super().rule(command, **fields)


def test_after_detach_changes_never_wait_for_netlink_and_finish_in_order() -> None:
    """The loop asks for changes while the netlink thread is stuck: each returns at once;
    once the kernel answers, the calls were made in the order asked, and each failure is
    handed back to the loop in that order, logged and counted."""

    async def story() -> None:
        ipr = GatedIPRoute()
        kr = routing(ipr)
        failures: list[tuple[str, BaseException]] = []
        kr.detach(asyncio.get_running_loop(), lambda what, exc: failures.append((what, exc)))
        ipr.calls.clear()
        ipr.gate.clear()  # the kernel is slow from now on
        ipr.refuse = {"198.51.100.64/26", "203.0.113.0"}
        prefixes = [ip_network(f"198.51.100.{i * 64}/26") for i in range(4)]
        started = time.perf_counter()
        for prefix in prefixes:
            kr.add(prefix)
        kr.remove(prefixes[0])
        kr.set_local_prefixes([ip_network("203.0.113.0/24")])  # its rule is refused
        assert time.perf_counter() - started < 0.5  # nothing waited for the thread
        assert kr.pending == 7 and kr.routes == set(prefixes[1:])  # believed at once
        assert ipr.calls == []  # and nothing reached the kernel yet
        settled = asyncio.ensure_future(kr.settled())
        await asyncio.sleep(0.05)
        assert not settled.done()  # the loop runs on while the kernel is slow
        ipr.gate.set()
        await asyncio.wait_for(settled, 10)
        assert kr.pending == 0  # every outcome handled once settled() returns
        made = [(cmd, f.get("dst") or f.get("src")) for _kind, cmd, f in ipr.calls]
        assert made == [
            ("replace", "198.51.100.0/26"),
            ("replace", "198.51.100.128/26"),  # .64/26 refused
            ("replace", "198.51.100.192/26"),
            ("del", "198.51.100.0/26"),
            ("replace", "203.0.113.0/24"),  # the throw route
        ]
        assert [what for what, _exc in failures] == [
            "route replace 198.51.100.64/26",
            "rule add 4341: from 203.0.113.0/24 lookup 4341",
        ]
        assert isinstance(failures[0][1], NetlinkError)
        assert isinstance(failures[1][1], OSError) and "cannot add ip rule" in str(failures[1][1])
        assert kr.stats() == {"submitted": 7, "failed": 2, "pending": 0}
        # Stop waits for its calls and removes only what lispd installed, under its protocol.
        ipr.calls.clear()
        kr.close()
        deleted = [f for kind, cmd, f in ipr.calls if kind == "route" and cmd == "del"]
        assert sorted(f["dst"] for f in deleted) == [
            "198.51.100.128/26",
            "198.51.100.192/26",
            "198.51.100.64/26",  # believed installed: deleted by our table and protocol only
            "203.0.113.0/24",
        ]
        assert all(f["table"] == 4341 and f["proto"] == 44 for f in deleted)
        assert ipr.calls[-1][0] == "close"

    asyncio.run(story())


def test_before_detach_a_refused_change_raises_to_the_caller() -> None:
    """At start-up the caller waits: a rule the kernel refuses stops the start."""
    ipr = GatedIPRoute()
    kr = routing(ipr)
    ipr.refuse = {"198.51.100.0"}
    with pytest.raises(OSError, match="cannot add ip rule"):
        kr.set_local_prefixes([ip_network("198.51.100.0/24")])
    assert kr.stats() == {"submitted": 0, "failed": 0, "pending": 0}
    kr.close()
