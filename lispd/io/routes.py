"""Kernel routing for the TUN by policy: lispd's routes in a table of its own, chosen by rules
of its own, so the host's routes and its own traffic stay as the administrator made them.

What lispd installs (``T`` = ``[tun] route-table``, ``P`` = ``[tun] rule-priority``, every route
and rule under ``[tun] route-protocol``)::

    table T:  <map-cache prefix> dev <tun>      one per static [[map-cache]] prefix (0/0 too)
              throw <local EID-prefix>           traffic to local EIDs leaves T: normal routing
    P      iif <tun> goto P+3                    what comes out of the TUN is never sent back
    P+1    from <local EID-prefix> lookup T      ITR: packets from local EIDs (one per prefix)
    P+2    not iif lo lookup T                   PITR: packets the router forwards, not its own
    P+3    nop                                   the end of lispd's rules

A lookup in ``T`` that finds nothing (or a ``throw``) goes on with the next rule, so the
administrator's rules and tables (``main``, VRFs, rules at other priorities) decide everything
lispd does not carry: the router's own traffic (its registrations, probes, keepalives,
management) is sourced from its RLOCs and interface addresses, not from EIDs, and never meets
``T``, whatever the map-cache covers.  The kernel removes the TUN's routes with the device;
lispd removes the rest on stop.  After a SIGKILL the next start removes exactly what the killed
run left: the rules of lispd's protocol at priorities P..P+3 and the routes of lispd's protocol
in ``T``.  Nothing else is ever changed.

pyroute2 0.9 runs its own asyncio loop under the synchronous API, which cannot run inside the
daemon's loop (and uvloop has no netlink sockets), so every netlink call is made on one worker
thread that owns the IPRoute object, one call at a time in the order they were asked for.
At start-up (and on stop) the caller waits for each call and gets its error.  Once the daemon
serves, :meth:`KernelRouting.detach` makes the changes asked for from the event loop
(:meth:`~KernelRouting.add`, :meth:`~KernelRouting.remove`,
:meth:`~KernelRouting.set_local_prefixes`) return at once: each call is queued for the thread,
and its outcome comes back to the loop when it is done, in the same order; a failure is logged
(at a rate limit) and counted (``failed``), and nothing waits for the kernel.  What lispd
believes it installed (``routes``, ``throws``, ``rules``) changes when the change is asked for,
so a later change and the clean-up on stop see it, and every delete still names lispd's table,
protocol and priorities: a failed or late call never makes lispd touch a route or rule it did
not create.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from lispd.logfmt import kv

log = logging.getLogger("lispd.io.routes")

Network = IPv4Network | IPv6Network

RULE_SPAN: Final = 4
"""How many rule priorities lispd uses, from ``[tun] rule-priority`` on."""

FR_ACT_TO_TBL: Final = 1
FR_ACT_GOTO: Final = 2
FR_ACT_NOP: Final = 3
FIB_RULE_INVERT: Final = 0x2
FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)
FAILURE_LOG_EVERY: Final = 10.0
"""Seconds between two warnings about failed netlink calls (each one is counted)."""

FailureHandler = Callable[[str, BaseException], None]


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Where lispd's routes and rules live (``[tun] route-table``, ``rule-priority``,
    ``route-protocol``)."""

    table: int
    priority: int
    protocol: int

    def owns_rule(self, priority: int, protocol: int) -> bool:
        """Whether a rule with this priority and protocol is one of ours."""
        return protocol == self.protocol and self.priority <= priority < self.priority + RULE_SPAN

    def owns_route(self, table: int, protocol: int) -> bool:
        """Whether a route in ``table`` with this protocol is one of ours."""
        return table == self.table and protocol == self.protocol


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule lispd wants (see the module docstring for the set)."""

    family: int
    priority: int
    action: int = FR_ACT_TO_TBL
    table: int = 0
    source: Network | None = None
    iifname: str | None = None
    invert: bool = False
    goto: int | None = None

    def describe(self) -> str:
        """``ip rule`` style text, for logs."""
        parts = [str(self.priority) + ":", "not" if self.invert else ""]
        parts.append(f"from {self.source}" if self.source is not None else "from all")
        if self.iifname:
            parts.append(f"iif {self.iifname}")
        if self.action == FR_ACT_GOTO:
            parts.append(f"goto {self.goto}")
        elif self.action == FR_ACT_NOP:
            parts.append("nop")
        else:
            parts.append(f"lookup {self.table}")
        return " ".join(p for p in parts if p)


def _family(network: Network) -> int:
    return socket.AF_INET if network.version == 4 else socket.AF_INET6


def wanted_rules(
    policy: RoutingPolicy, tun: str, local_prefixes: Iterable[Network], itr: bool, pitr: bool
) -> list[Rule]:
    """The rules lispd installs for an ITR (``from`` each local EID-prefix) and a PITR
    (everything the router forwards), both families; none without either role."""
    if not (itr or pitr):
        return []
    p = policy.priority
    rules: list[Rule] = []
    for family in FAMILIES:
        rules.append(Rule(family, p, FR_ACT_GOTO, iifname=tun, goto=p + 3))
        rules.append(Rule(family, p + 3, FR_ACT_NOP))
        if pitr:
            rules.append(Rule(family, p + 2, table=policy.table, iifname="lo", invert=True))
    if itr:
        for prefix in sorted(set(local_prefixes), key=lambda n: (n.version, n)):
            rules.append(Rule(_family(prefix), p + 1, table=policy.table, source=prefix))
    return rules


class KernelRouting:
    """lispd's routes and rules on this host (see the module docstring): installs them, keeps
    them current, removes exactly them."""

    def __init__(self, ifname: str, policy: RoutingPolicy, *, itr: bool, pitr: bool) -> None:
        """Find the TUN ``ifname``, remove what an earlier run of ours left, and install the
        rules that do not depend on the database.  Raises OSError when the device is missing."""
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._init_queue()
        self.ipr: IPRoute = self._call(IPRoute)
        links = self._call(self.ipr.link_lookup, ifname=ifname)
        if not links:
            self.close()
            raise OSError(f"no interface {ifname}")
        self.ifname = ifname
        self.ifindex: int = links[0]
        self.policy = policy
        self.itr, self.pitr = itr, pitr
        self.routes: set[Network] = set()  # map-cache prefixes routed to the TUN
        self.throws: set[Network] = set()  # local EID-prefixes
        self.rules: list[Rule] = []
        removed = self.remove_leftovers()
        if removed:
            log.info("removed leftover routes and rules of an earlier run %s", kv(count=removed))
        self.set_local_prefixes(())

    def _init_queue(self) -> None:
        """Calls are waited for until :meth:`detach`."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_failure: FailureHandler | None = None
        self.submitted = 0  # calls queued after detach()
        self.done = 0  # ... and done (failed or not)
        self.failed = 0  # ... and failed
        self._failure_logged = -FAILURE_LOG_EVERY

    # --- how calls are made ------------------------------------------------------------------

    def detach(
        self, loop: asyncio.AbstractEventLoop, on_failure: FailureHandler | None = None
    ) -> None:
        """From now on changes return at once (see the module docstring): each netlink call is
        queued, and its outcome handled on ``loop`` when it is done, in order; ``on_failure``
        (what failed, the error) is called for each failure, after it is logged and counted."""
        self._loop, self._on_failure = loop, on_failure

    async def settled(self) -> None:
        """Wait, without blocking the loop, until every change asked for so far is done (and
        its outcome handled)."""
        if self._loop is not None:
            await asyncio.wrap_future(self._worker.submit(_nothing))

    @property
    def pending(self) -> int:
        """Netlink calls queued and not done yet."""
        return self.submitted - self.done

    def stats(self) -> dict[str, int]:
        """The queued calls' counters: ``submitted``, ``failed``, ``pending``."""
        return {"submitted": self.submitted, "failed": self.failed, "pending": self.pending}

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Make one call on the netlink thread and wait for its result (start-up, stop)."""
        return self._worker.submit(fn, *args, **kwargs).result()

    def _change(self, what: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """One change on the netlink thread: waited for (its error raised) before
        :meth:`detach`, queued after it."""
        loop = self._loop
        if loop is None:
            self._call(fn, *args, **kwargs)
            return
        future = self._worker.submit(fn, *args, **kwargs)
        self.submitted += 1

        def finished(done: Future[None]) -> None:  # on the netlink thread
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to tell
                loop.call_soon_threadsafe(self._finished, what, done)

        future.add_done_callback(finished)

    def _finished(self, what: str, future: Future[None]) -> None:
        """A queued call is done (on the loop, in the order the calls were queued)."""
        self.done += 1
        error = future.exception()
        if error is None:
            return
        self.failed += 1
        now = time.monotonic()
        if now - self._failure_logged >= FAILURE_LOG_EVERY:
            self._failure_logged = now
            log.warning(
                "netlink change failed %s", kv(change=what, error=error, failed=self.failed)
            )
        if self._on_failure is not None:
            self._on_failure(what, error)

    # --- what an earlier run left ----------------------------------------------------------------

    def remove_leftovers(self) -> int:
        """Remove every rule and route of ours (by protocol, priority range and table) that
        this instance did not install: leftovers of a run killed without clean-up."""
        removed = 0
        for family in FAMILIES:
            rules = [
                msg
                for msg in self._call(self.ipr.get_rules, family=family)
                if self.policy.owns_rule(
                    msg.get_attr("FRA_PRIORITY") or 0, msg.get_attr("FRA_PROTOCOL") or 0
                )
            ]
            for msg in rules:  # a live lispd's rules name its TUN, which exists
                other = msg.get_attr("FRA_IIFNAME")
                if (
                    other
                    and other != self.ifname
                    and self._call(self.ipr.link_lookup, ifname=other)
                ):
                    raise OSError(
                        errno.EADDRINUSE,
                        f"routing table {self.policy.table} and rule priority "
                        f"{self.policy.priority} are in use by the lispd of TUN {other}",
                    )
            for msg in rules:
                if self._delete_rule_msg(msg):
                    removed += 1
            for msg in self._call(self.ipr.get_routes, family=family, table=self.policy.table):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                if not self.policy.owns_route(table, msg["proto"]):
                    continue
                try:
                    self._call(self.ipr.route, "del", **_route_key(msg, family))
                    removed += 1
                except NetlinkError as exc:
                    log.debug("leftover route not removed %s", kv(error=exc))
        return removed

    def _delete_rule_msg(self, msg: Any) -> bool:
        fields: dict[str, Any] = {
            "family": msg["family"],
            "priority": msg.get_attr("FRA_PRIORITY"),
            "action": msg["action"],
            "flags": msg["flags"],
            "protocol": msg.get_attr("FRA_PROTOCOL"),
        }
        table = msg.get_attr("FRA_TABLE") or msg["table"]
        if table:
            fields["table"] = table
        if msg.get_attr("FRA_GOTO") is not None:
            fields["goto"] = msg.get_attr("FRA_GOTO")
        if msg.get_attr("FRA_IIFNAME"):
            fields["iifname"] = msg.get_attr("FRA_IIFNAME")
        if msg.get_attr("FRA_SRC"):
            fields["src"] = msg.get_attr("FRA_SRC")
            fields["src_len"] = msg["src_len"]
        try:
            self._call(self.ipr.rule, "del", **fields)
        except NetlinkError as exc:
            log.debug("leftover rule not removed %s", kv(error=exc))
            return False
        return True

    # --- routes to the TUN ---------------------------------------------------------------------

    def add(self, prefix: Network) -> None:
        """Route ``prefix`` to the TUN in lispd's table."""
        self._change(
            f"route replace {prefix}",
            self.ipr.route,
            "replace",
            dst=str(prefix),
            oif=self.ifindex,
            family=_family(prefix),
            table=self.policy.table,
            proto=self.policy.protocol,
        )
        self.routes.add(prefix)

    def remove(self, prefix: Network) -> None:
        """Remove a route to the TUN this instance installed (nothing else)."""
        if prefix not in self.routes:
            return
        self.routes.discard(prefix)
        self._delete_route(prefix, oif=self.ifindex)

    # --- local EID-prefixes: throw routes and ITR rules ----------------------------------------

    def set_local_prefixes(self, prefixes: Iterable[Network]) -> None:
        """Make the throw routes and rules match the local EID-prefixes ``prefixes`` (start and
        every reload), changing only what differs."""
        wanted = set(prefixes)
        for prefix in sorted(self.throws - wanted, key=lambda n: (n.version, n)):
            self.throws.discard(prefix)
            self._delete_route(prefix, type="throw")
        for prefix in sorted(wanted - self.throws, key=lambda n: (n.version, n)):
            self._change(
                f"route replace throw {prefix}",
                self.ipr.route,
                "replace",
                dst=str(prefix),
                type="throw",
                family=_family(prefix),
                table=self.policy.table,
                proto=self.policy.protocol,
            )
            self.throws.add(prefix)
        rules = wanted_rules(self.policy, self.ifname, wanted, self.itr, self.pitr)
        for rule in [r for r in self.rules if r not in rules]:
            self._rule("del", rule)
        for rule in [r for r in rules if r not in self.rules]:
            self._rule("add", rule)
            log.debug("rule added %s", kv(rule=rule.describe()))
        self.rules = rules

    def _rule(self, command: str, rule: Rule) -> None:
        fields: dict[str, Any] = {
            "family": rule.family,
            "priority": rule.priority,
            "action": rule.action,
            "protocol": self.policy.protocol,
            "flags": FIB_RULE_INVERT if rule.invert else 0,
        }
        if rule.action == FR_ACT_TO_TBL:
            fields["table"] = rule.table
        if rule.goto is not None:
            fields["goto"] = rule.goto
        if rule.iifname is not None:
            fields["iifname"] = rule.iifname
        if rule.source is not None:
            fields["src"] = str(rule.source.network_address)
            fields["src_len"] = rule.source.prefixlen

        def call() -> None:  # on the netlink thread
            try:
                self.ipr.rule(command, **fields)
            except NetlinkError as exc:
                if command == "del":  # already gone (removed by hand): nothing to do
                    log.debug("rule already gone %s", kv(rule=rule.describe(), error=exc))
                    return
                raise OSError(exc.code, f"cannot add ip rule {rule.describe()}: {exc}") from exc

        self._change(f"rule {command} {rule.describe()}", call)

    def _delete_route(self, prefix: Network, **match: Any) -> None:
        def call() -> None:  # on the netlink thread
            try:
                self.ipr.route(
                    "del",
                    dst=str(prefix),
                    family=_family(prefix),
                    table=self.policy.table,
                    proto=self.policy.protocol,
                    **match,
                )
            except NetlinkError as exc:  # gone with the device, or removed by hand
                log.debug("route already gone %s", kv(prefix=prefix, error=exc))

        self._change(f"route del {prefix}", call)

    # --- stop ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every route and rule this instance installed and close the netlink socket:
        after the queued calls, waiting for each."""
        self._loop = None
        if getattr(self, "policy", None) is not None:
            for prefix in sorted(self.routes, key=lambda n: (n.version, n)):
                self.remove(prefix)
            for rule in self.rules:
                self._rule("del", rule)
            self.rules = []
            for prefix in sorted(self.throws, key=lambda n: (n.version, n)):
                self._delete_route(prefix, type="throw")
            self.throws = set()
        self._call(self.ipr.close)
        self._worker.shutdown()


def _nothing() -> None:
    """A call that marks a point in the netlink thread's queue."""


def _route_key(msg: Any, family: int) -> dict[str, Any]:
    """The fields that name one route of a dump, for deleting it."""
    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    key: dict[str, Any] = {
        "dst": f"{dst}/{msg['dst_len']}",
        "family": family,
        "table": msg.get_attr("RTA_TABLE") or msg["table"],
        "proto": msg["proto"],
        "type": msg["type"],
    }
    if msg.get_attr("RTA_OIF"):
        key["oif"] = msg.get_attr("RTA_OIF")
    return key
