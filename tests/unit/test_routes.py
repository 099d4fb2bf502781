"""Unit tests of lispd.io.routes without root: the persistent-TUN check on a fake sysfs and the
removal of stale routes against a fake netlink socket."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from lispd.io.routes import RouteTable, is_persistent_tun

TUN = 7


class FakeRoute(dict[str, Any]):
    """A route message as pyroute2 returns it: fields by key, attributes by get_attr."""

    def __init__(self, dst: str | None, dst_len: int, oif: int, proto: int, table: int) -> None:
        super().__init__(dst_len=dst_len, proto=proto, table=table)
        self.attrs = {"RTA_DST": dst, "RTA_OIF": oif, "RTA_TABLE": table}

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


class FakeIPRoute:
    def __init__(self, routes: dict[int, list[FakeRoute]]) -> None:
        self.routes = routes
        self.deleted: list[tuple[str, int, int]] = []

    def get_routes(self, family: int) -> list[FakeRoute]:
        return self.routes.get(family, [])

    def route(self, command: str, *, dst: str, oif: int, family: int) -> None:
        assert command == "del"
        self.deleted.append((dst, oif, family))


def table_with(ipr: FakeIPRoute, installed: tuple[str, ...] = ()) -> RouteTable:
    """A RouteTable on the TUN with ``installed`` routes, talking to ``ipr`` (no netlink)."""
    table = RouteTable.__new__(RouteTable)
    table._worker = ThreadPoolExecutor(max_workers=1)
    table.ipr = ipr  # type: ignore[assignment]
    table.ifindex = TUN
    table.installed = {ip_network(p) for p in installed}
    return table


def test_persistent_tun_flag_is_read_from_sysfs(tmp_path: Path) -> None:
    for name, flags in (("lisp0", "0x1001"), ("lisp1", "0x1801"), ("junk", "zz")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tun_flags").write_text(flags + "\n")
    (tmp_path / "eth0").mkdir()
    assert not is_persistent_tun("lisp0", tmp_path)  # IFF_TUN | IFF_NO_PI: ours, goes with us
    assert is_persistent_tun("lisp1", tmp_path)  # ... | IFF_PERSIST
    assert not is_persistent_tun("junk", tmp_path)
    assert not is_persistent_tun("eth0", tmp_path)  # not a TUN/TAP device
    assert not is_persistent_tun("missing", tmp_path)


def test_remove_stale_takes_only_our_leftover_routes_through_the_tun() -> None:
    v4, v6 = socket.AF_INET, socket.AF_INET6
    ipr = FakeIPRoute(
        {
            v4: [
                FakeRoute("198.51.100.16", 28, TUN, 4, 254),  # a killed run's: removed
                FakeRoute(None, 0, TUN, 4, 254),  # its default route: removed
                FakeRoute("198.51.100.32", 28, TUN, 4, 254),  # installed by us now: kept
                FakeRoute("203.0.113.0", 24, TUN, 3, 254),  # the operator's (proto boot): kept
                FakeRoute("198.51.100.48", 28, TUN, 4, 100),  # another table: kept
                FakeRoute("192.0.2.0", 24, 3, 4, 254),  # another device: kept
            ],
            v6: [
                FakeRoute("2001:db8:100:2::", 64, TUN, 4, 254),  # removed
                FakeRoute("fe80::", 64, TUN, 2, 254),  # the kernel's: kept
            ],
        }
    )
    table = table_with(ipr, ("198.51.100.32/28",))
    assert table.remove_stale() == 3
    assert ipr.deleted == [
        ("198.51.100.16/28", TUN, v4),
        ("0.0.0.0/0", TUN, v4),
        ("2001:db8:100:2::/64", TUN, v6),
    ]
    assert table.installed == {ip_network("198.51.100.32/28")}
    table._worker.shutdown()
