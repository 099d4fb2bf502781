"""NAT traversal in the draft's style (draft-ietf-lisp-nat-traversal, as Open Overlay Router
does it), across a lispd Map-Server, a lispd RTR and a lispd xTR behind the NAT model.

xtr1 sits behind a home NAT (private RLOC 203.0.113.2).  It sends a signed Info-Request, gets a
signed Info-Reply naming the RTR, registers through the RTR (an ECM'd Map-Register with its
xTR-ID, from its data port), the RTR forwards the Map-Register to the Map-Server, the
Map-Server answers the RTR with a Map-Notify carrying the MS-RTR authentication, and the RTR
relays it to xtr1 in a data packet (instance-ID 0xFFFFFF).  Traffic then flows through the
RTR both ways.  Wrong keys at each step are refused and counted.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from lispd.wire import auth
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.info import InfoMessage
from lispd.wire.mapregister import MapNotify, MapRegister, verify_rtr_auth
from tests import configs
from tests.sim.network import Nat, Network, SimNode
from tests.sim.plan import (
    H1,
    H2,
    MS,
    NAT_PUBLIC,
    RTR,
    SITE1,
    SITE2,
    XTR1_PRIVATE,
    XTR2,
)
from tests.sim.worlds import Pinger, registering, resolving

KEEPALIVE = 1.0
REGISTRATION = 10.0  # xtr1 registers (through the RTR) this often
NAT_TIMEOUT = 30.0
MS_RTR_KEY = "ms-rtr-secret"
DRAFT = {"style": "draft"}


def world(
    *,
    rtr_key: str = MS_RTR_KEY,
    xtr1_key: str = SITE1.key,
    ms_key: str = MS_RTR_KEY,
    settle: float = 3.0,
) -> tuple[Network, Nat, SimNode, SimNode, SimNode, SimNode]:
    """(net, nat, ms, rtr, xtr1 behind the NAT, xtr2), after ``settle`` seconds."""
    net = Network()
    nat = net.add_nat(
        "nat", NAT_PUBLIC, timeout=NAT_TIMEOUT, filtering="address-and-port-dependent"
    )
    ms = net.add_node(
        "ms",
        configs.msmr(
            "ms",
            [MS],
            [SITE1.table(), SITE2.table()],
            mapping_system={"rtr-rlocs": [RTR], "ms-rtr-key": ms_key},
            nat_traversal=DRAFT,
        ),
    )
    rtr = net.add_node(
        "rtr",
        configs.rtr("rtr", [RTR], map_resolver=configs.addresses(MS), rtr={"ms-rtr-key": rtr_key}),
    )
    xtr2 = net.add_node(
        "xtr2",
        configs.xtr(
            "xtr2", [XTR2], SITE2.prefixes[:1], map_server=registering(SITE2), **resolving()
        ),
        answer_pings=True,
    )
    xtr1_ms: list[dict[str, Any]] = [configs.map_server(MS, xtr1_key, **{"key-id": 1})]
    xtr1 = net.add_node(
        "xtr1",
        configs.xtr(
            "xtr1",
            [XTR1_PRIVATE],
            SITE1.prefixes[:1],
            map_server=xtr1_ms,
            nat_traversal={
                "enabled": True,
                "info-interval": 5,
                "keepalive-interval": KEEPALIVE,
                **DRAFT,
            },
            registration={"interval": REGISTRATION},
            **resolving(),
        ),
        behind=nat,
        answer_pings=True,
    )
    net.advance(settle)
    return net, nat, ms, rtr, xtr1, xtr2


def _control(net: Network, **kw: Any) -> list[tuple[Any, Any]]:
    return [(d, decode_control(d.payload)) for d in net.datagrams("control", **kw)]


def test_the_draft_exchange_step_by_step() -> None:
    net, nat, ms, rtr, xtr1, _xtr2 = world()
    key1 = SITE1.key.encode()

    # 1-2. A signed Info-Request (TTL 0) and a signed Info-Reply with the RTR and a TTL.
    requests = [
        (d, m) for d, m in _control(net, sender="xtr1", dst=MS) if isinstance(m, InfoMessage)
    ]
    assert requests
    request_dg, request = requests[0]
    assert request.key_id == 1 and request.ttl == 0 and auth.verify(request_dg.payload, key1)
    replies = [(d, m) for d, m in _control(net, sender="ms") if isinstance(m, InfoMessage)]
    assert replies
    reply_dg, reply = replies[0]
    assert reply.reply and reply.nonce == request.nonce and reply.ttl == 10
    assert auth.verify(reply_dg.payload, key1)
    assert [str(a) for a in reply.address.rtr_rlocs] == [RTR]  # type: ignore[attr-defined]
    status = xtr1.node.nat_status
    assert status is not None and status.behind_nat and status.global_rloc == ip_address(NAT_PUBLIC)

    # 3. The Map-Register goes through the RTR: an ECM with the R bit, from the data port.
    ecms = [
        (d, m)
        for d, m in _control(net, sender="xtr1", dst=RTR)
        if isinstance(m, EncapsulatedControl)
    ]
    assert ecms
    ecm_dg, ecm = ecms[0]
    assert (ecm_dg.sport, ecm_dg.dport) == (4341, 4342) and ecm.rtr
    assert (str(ecm.inner_ip.src), str(ecm.inner_ip.dst)) == (XTR1_PRIVATE, MS)
    register = ecm.message
    assert isinstance(register, MapRegister)
    assert register.for_rtr and register.proxy_reply and register.want_map_notify
    assert register.xtr_id is not None and register.xtr_id == xtr1.node.control.registrar.xtr_id  # type: ignore[union-attr]
    locators = register.records[0].locators
    assert [(str(loc.address), loc.reachable) for loc in locators] == [
        (RTR, True),
        (XTR1_PRIVATE, False),
    ]

    # 4. The RTR forwards it unchanged to the Map-Server, from its control port.
    forwarded = [
        (d, m) for d, m in _control(net, sender="rtr", dst=MS) if isinstance(m, MapRegister)
    ]
    assert forwarded and forwarded[0][1] == register and forwarded[0][0].sport == 4342

    # 5. The Map-Server's Map-Notify to the RTR carries the MS-RTR authentication.
    notifies = [(d, m) for d, m in _control(net, sender="ms", dst=RTR) if isinstance(m, MapNotify)]
    assert notifies
    notify_dg, notify = notifies[0]
    assert notify.for_rtr and notify.xtr_id == register.xtr_id
    assert verify_rtr_auth(notify_dg.payload, MS_RTR_KEY.encode())

    # 6. The RTR relays it to the NAT's mapping of xtr1's data port, from its control port.
    data_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    relays = [d for d in net.datagrams("control", sender="rtr", dst=NAT_PUBLIC)]
    assert relays and {(d.sport, d.dport) for d in relays} == {(4342, data_port)}
    assert rtr.packets("rtr.notify-relayed") >= 1
    assert rtr.node.draft_rtr is not None
    (binding,) = rtr.node.draft_rtr.bindings()
    assert binding.xtr_id == register.xtr_id
    assert (str(binding.translated), binding.port, str(binding.private)) == (
        NAT_PUBLIC,
        data_port,
        XTR1_PRIVATE,
    )

    # 7. xtr1 accepted it: its registration is acknowledged.
    assert xtr1.packets("nat.notify-relayed") >= 1
    status_ms = xtr1.node.control.registrar.status(net.now)  # type: ignore[union-attr]
    assert status_ms[0]["acknowledged"]
    site1 = [s for s in ms.sites() if s["site"] == "site1"]
    assert [(s["eid-prefix"], s["rlocs"], s["proxy-reply"]) for s in site1] == [
        (SITE1.prefixes[0], [RTR, XTR1_PRIVATE], True)
    ]
    assert xtr1.drops() == {} and rtr.drops() == {} and ms.drops() == {}


def test_traffic_flows_through_the_rtr_both_ways() -> None:
    net, nat, _ms, rtr, xtr1, xtr2 = world()
    start = net.now
    out = Pinger(net, "xtr1", H1, H2)
    back = Pinger(net, "xtr2", H2, H1)
    for _ in range(3):
        out.send()
        net.settle()
        back.send()
        net.settle()
    assert out.answered() == [1, 2, 3] and back.answered() == [1, 2, 3]
    data = [d for d in net.datagrams("data", since=start) if not d.control_in_data]
    assert {(d.sender, str(d.dst)) for d in data} == {
        ("xtr1", RTR),
        ("xtr2", RTR),
        ("rtr", XTR2),
        ("rtr", NAT_PUBLIC),
    }
    data_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    to_nat = [d for d in data if d.sender == "rtr" and str(d.dst) == NAT_PUBLIC]
    assert {(d.sport, d.dport) for d in to_nat} == {(4341, data_port)}
    # xtr2 reaches site 1 through the RTR; the RTR maps it to the NAT's public address itself.
    entry = xtr2.lookup(H1)
    assert entry is not None and [str(r.address) for r in entry.rlocs] == [RTR]
    entry = rtr.lookup(H1)
    assert entry is not None and entry.source == "nat-registration"
    assert [(str(r.address), r.port) for r in entry.rlocs] == [(NAT_PUBLIC, data_port)]
    assert nat.stats["inbound-filtered"] == 0 and nat.stats["inbound-no-mapping"] == 0
    assert xtr1.drops() == {} and xtr2.drops() == {} and rtr.drops() == {}


def test_registration_is_kept_up_through_the_rtr() -> None:
    net, _nat, ms, rtr, xtr1, _xtr2 = world()
    net.advance(200.0)  # past the Map-Server's registration timeout and the RTR's binding one
    assert [s["eid-prefix"] for s in ms.sites() if s["site"] == "site1"] == [SITE1.prefixes[0]]
    assert rtr.node.draft_rtr is not None and len(rtr.node.draft_rtr.bindings()) == 1
    assert rtr.node.draft_rtr.stats["notifies-relayed"] >= 4
    status_ms = xtr1.node.control.registrar.status(net.now)  # type: ignore[union-attr]
    assert status_ms[0]["acknowledged"]
    assert xtr1.drops() == {} and rtr.drops() == {} and ms.drops() == {}


def test_wrong_site_key_refused_at_the_map_server() -> None:
    _net, _nat, ms, rtr, xtr1, _xtr2 = world(xtr1_key="not-the-site-key")
    assert ms.drops().get("info-request-auth-failed", 0) >= 1
    status = xtr1.node.nat_status
    assert status is None or not status.discovered  # never answered: nothing registered
    assert not [s for s in ms.sites() if s["site"] == "site1"]
    assert rtr.node.draft_rtr is not None and not rtr.node.draft_rtr.bindings()


def test_wrong_ms_rtr_key_at_the_rtr_relays_nothing() -> None:
    net, _nat, ms, rtr, xtr1, _xtr2 = world(rtr_key="not-the-ms-rtr-key")
    # The registration reached the Map-Server (the site key is right) ...
    assert [s["eid-prefix"] for s in ms.sites() if s["site"] == "site1"] == [SITE1.prefixes[0]]
    # ... but the RTR refuses the Map-Notify: no binding, nothing relayed, xtr1 unacknowledged.
    assert rtr.drops().get("rtr-notify-auth-failed", 0) >= 1
    assert rtr.node.draft_rtr is not None and not rtr.node.draft_rtr.bindings()
    assert rtr.packets("rtr.notify-relayed") == 0
    status_ms = xtr1.node.control.registrar.status(net.now)  # type: ignore[union-attr]
    assert not status_ms[0]["acknowledged"]


def test_unauthenticated_info_request_refused_by_a_draft_map_server() -> None:
    net = Network()
    ms = net.add_node(
        "ms",
        configs.msmr(
            "ms",
            [MS],
            [SITE1.table()],
            mapping_system={"rtr-rlocs": [RTR], "ms-rtr-key": MS_RTR_KEY},
            nat_traversal=DRAFT,
        ),
    )
    # A lispers.net-style xTR (unsigned Info-Requests) gets no answer from it.
    xtr1 = net.add_node(
        "xtr1",
        configs.xtr(
            "xtr1",
            [XTR1_PRIVATE],
            SITE1.prefixes[:1],
            map_server=registering(SITE1),
            nat_traversal={"enabled": True, "info-interval": 5},
        ),
    )
    net.advance(3.0)
    assert ms.drops().get("info-request-unauthenticated", 0) >= 1
    assert not [m for _d, m in _control(net, sender="ms") if isinstance(m, InfoMessage)]
    assert xtr1.node.nat_status is None or not xtr1.node.nat_status.discovered


def test_a_nat_reboot_is_followed_by_the_next_registration_through_the_rtr() -> None:
    net, nat, _ms, rtr, _xtr1, _xtr2 = world()
    back = Pinger(net, "xtr2", H2, H1)
    back.send()
    net.settle()
    assert back.answered() == [1]
    assert rtr.node.draft_rtr is not None
    (before,) = rtr.node.draft_rtr.bindings()

    nat.reboot(first_port=40000)  # every mapping gone; new ones get other ports
    net.advance(REGISTRATION + 1)  # the next ECM'd Map-Register makes a new mapping
    (after,) = rtr.node.draft_rtr.bindings()
    assert after.xtr_id == before.xtr_id and after.port != before.port
    assert after.port == nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    assert rtr.node.draft_rtr.stats["bindings-moved"] == 1
    entry = rtr.lookup(H1)
    assert entry is not None and [r.port for r in entry.rlocs] == [after.port]
    back.send()
    net.settle()
    assert back.answered() == [1, 2]


def test_the_ms_rtr_key_changes_live_on_reload() -> None:
    net, _nat, _ms, rtr, _xtr1, _xtr2 = world()
    relayed = rtr.packets("rtr.notify-relayed")
    assert relayed >= 1

    def rtr_config(key: str) -> str:
        doc = configs.rtr("rtr", [RTR], map_resolver=configs.addresses(MS), rtr={"ms-rtr-key": key})
        return configs.toml(doc)

    net.reload("rtr", rtr_config("a-new-key"))  # the Map-Server still signs with the old one
    net.advance(2 * REGISTRATION)
    assert rtr.drops().get("rtr-notify-auth-failed", 0) >= 2
    assert rtr.packets("rtr.notify-relayed") == relayed
    net.reload("rtr", rtr_config(MS_RTR_KEY))
    net.advance(REGISTRATION)
    assert rtr.packets("rtr.notify-relayed") > relayed
