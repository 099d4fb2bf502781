"""lispctl: command parsing, EID filtering and every table, from sample daemon JSON (golden
strings); the IO shell against a fake control socket (exit statuses, --json, messages)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lispd.cli import lispctl
from lispd.cli.lispctl import (
    COMMANDS,
    UsageError,
    build_request,
    format_clear,
    format_database,
    format_duration,
    format_json,
    format_map_cache,
    format_nat,
    format_registrations,
    format_reload,
    format_rlocs,
    format_rtr,
    format_site,
    format_stats,
    format_version,
    longest_match,
    parse_command,
    parse_eid,
    parse_prefix,
    table,
)
from tests import configs

# --------------------------------------------------------------------------------------------
# Sample results, shaped as the daemon's handlers return them

MAP_CACHE: list[dict[str, Any]] = [
    {
        "instance-id": 0,
        "eid-prefix": "0.0.0.0/0",
        "action": "send-map-request",
        "source": "static",
        "ttl": None,
        "rlocs": [],
    },
    {
        "instance-id": 0,
        "eid-prefix": "198.51.100.0/24",
        "action": "native-forward",
        "source": "map-reply",
        "ttl": 60,
        "rlocs": [],
    },
    {
        "instance-id": 0,
        "eid-prefix": "198.51.100.16/28",
        "action": "encapsulate",
        "source": "map-reply",
        "ttl": 86400,
        "rlocs": [
            {"address": "192.0.2.14", "priority": 1, "weight": 100, "up": True},
            {"address": "2001:db8::14", "priority": 2, "weight": 0, "up": False},
        ],
    },
    {
        "instance-id": 7,
        "eid-prefix": "198.51.100.16/28",
        "action": "encapsulate",
        "source": "static",
        "ttl": None,
        "rlocs": [{"address": "192.0.2.7", "priority": 1, "weight": 100, "up": True}],
    },
    {
        "instance-id": 7,
        "eid-prefix": "2001:db8:100:2::/64",
        "action": "encapsulate",
        "source": "map-reply",
        "ttl": 900,
        "rlocs": [
            {
                "address": "192.0.2.1",
                "priority": 1,
                "weight": 100,
                "up": True,
                "elp": ["192.0.2.1", "192.0.2.5", "192.0.2.14"],
            }
        ],
    },
]

DATABASE = [
    {
        "instance-id": 0,
        "eid-prefix": "198.51.100.0/28",
        "rlocs": [
            {"address": "192.0.2.134", "priority": 1, "weight": 50, "up": True},
            {"address": "192.0.2.135", "priority": 1, "weight": 50, "up": True},
        ],
    },
    {
        "instance-id": 0,
        "eid-prefix": "2001:db8:100:1::/64",
        "rlocs": [{"address": "192.0.2.134", "priority": 1, "weight": 100, "up": True}],
    },
]

SITES = [
    {
        "site": "site1",
        "instance-id": 0,
        "eid-prefix": "198.51.100.0/28",
        "registered-by": "192.0.2.10:62214",
        "last-registered-ago": 3.4,
        "rlocs": ["192.0.2.10", "192.0.2.100"],
        "proxy-reply": True,
    },
    {
        "site": "campus-east",
        "instance-id": 12,
        "eid-prefix": "2001:db8:100:2::/64",
        "registered-by": "192.0.2.14:4342",
        "last-registered-ago": 4000.0,
        "rlocs": ["192.0.2.1->192.0.2.14"],
        "proxy-reply": False,
    },
]

RLOCS = [
    {
        "rloc": "192.0.2.99",
        "eid-prefix": "203.0.113.0/24",
        "state": "unknown",
        "up": None,
        "last-rtt": None,
        "rtts": [],
        "hops": [],
        "last-reply": None,
        "losses": 1,
        "probes-sent": 1,
        "replies": 0,
        "outstanding": True,
        "last-reply-age": None,
    },
    {
        "rloc": "192.0.2.14",
        "eid-prefix": "[7]198.51.100.16/28",
        "state": "up",
        "up": True,
        "last-rtt": 0.001243,
        "rtts": [0.001243, 0.000981, 0.01],
        "hops": ["3/3", "?/3", "3/3"],
        "last-reply": 1234.5,
        "losses": 0,
        "probes-sent": 12,
        "replies": 12,
        "outstanding": False,
        "last-reply-age": 3.2,
    },
]

STATS = {
    "packets": {
        "itr.encap.bytes": 564,
        "itr.encap.packets": 6,
        "control.sent.bytes": 170,
        "control.sent.packets": 2,
        "etr.decap.bytes": 1234567,
        "etr.decap.packets": 1000,
    },
    "drops": {"not-unicast": 2, "etr-not-local-eid": 17, "control-bad-auth": 1},
}

NAT = {
    "discovered": True,
    "behind-nat": True,
    "global-rloc": "192.0.2.10",
    "rtrs": ["192.0.2.100"],
    "local-rlocs": ["192.0.2.134"],
    "info-interval": 5.0,
    "keepalive-interval": 1.0,
    "map-servers": [
        {
            "address": "192.0.2.2",
            "answered": True,
            "last-sent-ago": 3.0,
            "last-reply-ago": 2.996,
            "last-rtt": 0.004321,
            "next-send-in": 2.0,
            "requests-sent": 1,
            "replies": 1,
            "outstanding": 0,
            "global-rloc": "192.0.2.10",
            "translated-port": 62214,
            "behind-nat": True,
            "rtrs": ["192.0.2.100"],
        },
        {
            "address": "192.0.2.3",
            "answered": False,
            "last-sent-ago": 3.0,
            "last-reply-ago": None,
            "last-rtt": None,
            "next-send-in": 2.0,
            "requests-sent": 1,
            "replies": 0,
            "outstanding": 1,
            "global-rloc": None,
            "translated-port": None,
            "behind-nat": None,
            "rtrs": [],
        },
    ],
    "skipped-map-servers": [],
    "keepalives": [
        {
            "rtr": "192.0.2.100",
            "keepalives-sent": 4,
            "last-sent-ago": 0.2,
            "last-reply-ago": None,
            "next-send-in": 0.8,
        }
    ],
    "drops": {},
    "stats": {"keepalives-sent": 4, "replies": 1, "requests-sent": 2},
}

RTR = [
    {
        "address": "192.0.2.10",
        "port": 19626,
        "age-seconds": 0.4,
        "expires-in": 119.6,
        "address-wide": False,
        "eid-prefixes": ["[0]198.51.100.32/28", "[0]2001:db8:100:3::/64"],
    },
    {
        "address": "192.0.2.10",
        "port": 20001,
        "age-seconds": 0.6,
        "expires-in": 119.4,
        "address-wide": True,
        "eid-prefixes": ["[0]198.51.100.0/28"],
    },
    {"address": "192.0.2.14", "port": 4341, "age-seconds": 61.0, "expires-in": 59.0},
]

REGISTRATIONS = [
    {
        "address": "192.0.2.2",
        "key-id": 2,
        "proxy-reply": True,
        "last-sent": 1000.0,
        "last-acked": 1000.01,
        "acknowledged": True,
        "registers-sent": 3,
        "notifies-accepted": 3,
        "next-send": 1057.0,
    },
    {
        "address": "2001:db8::2",
        "key-id": 1,
        "proxy-reply": False,
        "last-sent": 1000.0,
        "last-acked": None,
        "acknowledged": False,
        "registers-sent": 120,
        "notifies-accepted": 0,
        "next-send": None,
    },
]

# --------------------------------------------------------------------------------------------
# Tables


def test_map_cache_table() -> None:
    assert format_map_cache(MAP_CACHE) == (
        "LISP map-cache: 5 entries\n"
        "\n"
        "Inst-ID  EID-prefix           Action            Source     TTL       Locator                           Pri/Wgt  State\n"  # noqa: E501
        "0        0.0.0.0/0            send-map-request  static     never     -                                 -        -\n"  # noqa: E501
        "0        198.51.100.0/24      native-forward    map-reply  00:01:00  -                                 -        -\n"  # noqa: E501
        "0        198.51.100.16/28     encapsulate       map-reply  1d00h     192.0.2.14                        1/100    up\n"  # noqa: E501
        "                                                                     2001:db8::14                      2/0      down\n"  # noqa: E501
        "7        198.51.100.16/28     encapsulate       static     never     192.0.2.7                         1/100    up\n"  # noqa: E501
        "7        2001:db8:100:2::/64  encapsulate       map-reply  00:15:00  192.0.2.1->192.0.2.5->192.0.2.14  1/100    up\n"  # noqa: E501
    )


def test_empty_map_cache_has_the_header_only() -> None:
    assert format_map_cache([]) == (
        "LISP map-cache: 0 entries\n\n"
        "Inst-ID  EID-prefix  Action  Source  TTL  Locator  Pri/Wgt  State\n"
    )


def test_database_table() -> None:
    assert format_database(DATABASE) == (
        "LISP database: 2 EID-prefixes\n"
        "\n"
        "Inst-ID  EID-prefix           Locator      Pri/Wgt  State\n"
        "0        198.51.100.0/28      192.0.2.134  1/50     up\n"
        "                              192.0.2.135  1/50     up\n"
        "0        2001:db8:100:1::/64  192.0.2.134  1/100    up\n"
    )


def test_site_table() -> None:
    assert format_site(SITES) == (
        "LISP site registrations: 2 EID-prefixes\n"
        "\n"
        "Site         Last-register  Up   Who-last-registered  Inst-ID  EID-prefix           Proxy-reply  RLOCs\n"  # noqa: E501
        "site1        00:00:03       yes  192.0.2.10:62214     0        198.51.100.0/28      yes          192.0.2.10,192.0.2.100\n"  # noqa: E501
        "campus-east  01:06:40       yes  192.0.2.14:4342      12       2001:db8:100:2::/64  no           192.0.2.1->192.0.2.14\n"  # noqa: E501
    )


def test_rlocs_table() -> None:
    assert format_rlocs(RLOCS) == (
        "LISP RLOC probing: 2 RLOCs\n"
        "\n"
        "RLOC        EID-prefix           State    RTTs (ms)           Hops         Last-reply  Probes  Replies  Lost\n"  # noqa: E501
        "192.0.2.99  203.0.113.0/24       unknown  -                   -            never            1        0     1\n"  # noqa: E501
        "192.0.2.14  [7]198.51.100.16/28  up       1.243,0.981,10.000  3/3,?/3,3/3  00:00:03        12       12     0\n"  # noqa: E501
    )


def test_stats_table_counters_then_every_drop_reason_sorted() -> None:
    assert format_stats(STATS) == (
        "LISP packet counters\n"
        "\n"
        "Counter       Packets    Bytes\n"
        "control.sent        2      170\n"
        "etr.decap        1000  1234567\n"
        "itr.encap           6      564\n"
        "\n"
        "Drops: 20 in 3 reasons\n"
        "\n"
        "Reason             Packets\n"
        "control-bad-auth         1\n"
        "etr-not-local-eid       17\n"
        "not-unicast              2\n"
    )


def test_stats_without_drops_or_with_odd_counter_names() -> None:
    assert format_stats({"packets": {"weird": 3}, "drops": {}}) == (
        "LISP packet counters\n\nCounter  Packets  Bytes\nweird          3      -\n\nDrops: none\n"
    )


def test_stats_say_how_many_engines_forwarded_what() -> None:
    snap = {
        "packets": {"itr.encap.packets": 7, "itr.encap.bytes": 700},
        "drops": {},
        "fastpath": {"engines": 2, "worker-restarts": 1, "punted-tun": 2, "punted-udp": 1},
        "engines": {"main": 3, "worker1": 4},
    }
    assert format_stats(snap).splitlines()[-3:] == [
        "Fast path: compiled, 2 engines (forwarded: main 3, worker1 4), 1 worker restart; "
        "3 packets left to the Python path",
        "",
        "Drops: none",
    ]
    single = {"packets": {}, "drops": {}, "fastpath": {"engines": 1}}
    assert "Fast path: compiled, 1 engine; 0 packets left" in format_stats(single)


def test_nat_table() -> None:
    assert format_nat(NAT) == (
        "NAT traversal: discovered yes, behind a NAT yes\n"
        "  Global RLOC: 192.0.2.10\n"
        "  Local RLOCs: 192.0.2.134\n"
        "  RTRs: 192.0.2.100\n"
        "  Info-Request interval 5.0 s, keepalive interval 1.0 s\n"
        "\n"
        "Map-Server  Answered  Behind-NAT  Global-RLOC   Port  RTT (ms)  Last-reply  Requests  Replies\n"  # noqa: E501
        "192.0.2.2   yes       yes         192.0.2.10   62214     4.321  00:00:03           1        1\n"  # noqa: E501
        "192.0.2.3   no        -           -                -         -  never              1        0\n"  # noqa: E501
        "\n"
        "RTR          Keepalives  Last-sent  Last-reply\n"
        "192.0.2.100           4  00:00:00   never\n"
        "\n"
        "Messages         Count\n"
        "keepalives-sent      4\n"
        "replies              1\n"
        "requests-sent        2\n"
    )


def test_nat_disabled() -> None:
    assert format_nat({}) == "NAT traversal is not enabled on this node\n"


def test_rtr_table() -> None:
    # Two xTRs behind 192.0.2.10 (one binding each), one behind 192.0.2.14 (an older
    # daemon's row, without the claims: shown as "-").
    assert format_rtr(RTR) == (
        "LISP RTR NAT bindings: 3 bindings\n"
        "\n"
        "xTR global RLOC   Port  Refreshed  Expires-in  Default  EID-prefixes\n"
        "192.0.2.10       19626  00:00:00   00:02:00             "
        "[0]198.51.100.32/28, [0]2001:db8:100:3::/64\n"
        "192.0.2.10       20001  00:00:01   00:01:59    *        [0]198.51.100.0/28\n"
        "192.0.2.14        4341  00:01:01   00:00:59             -\n"
    )
    assert format_rtr([]) == (
        "LISP RTR NAT bindings: 0 bindings\n\n"
        "xTR global RLOC  Port  Refreshed  Expires-in  Default  EID-prefixes\n"
    )


def test_registrations_table_shows_the_daemon_clock_as_ages() -> None:
    assert format_registrations(REGISTRATIONS, now=1003.0) == (
        "LISP registrations: 2 Map-Servers\n"
        "\n"
        "Map-Server   Key-ID  Proxy-reply  Acked  Registers  Notifies  Last-sent  Last-acked  Next-send\n"  # noqa: E501
        "192.0.2.2         2  yes          yes            3         3  00:00:03   00:00:03    00:00:54\n"  # noqa: E501
        "2001:db8::2       1  no           no           120         0  00:00:03   never       -\n"
    )


def test_one_line_results() -> None:
    assert format_version({"version": "0.1.0", "name": "xtr1"}) == "lispd 0.1.0, node xtr1\n"
    assert format_clear({"cleared": 1}, "[0]10.0.0.0/8") == (
        "Cleared 1 learned map-cache entry for [0]10.0.0.0/8\n"
    )
    assert format_clear({"cleared": 4}, None) == "Cleared 4 learned map-cache entries\n"
    assert format_reload({"reloaded": True, "applied": ["database-mapping", "petr"]}) == (
        "Configuration reloaded: database-mapping, petr\n"
    )
    assert format_reload({"reloaded": True, "applied": [], "restart-needed": ["tun"]}) == (
        "Configuration reloaded: nothing changed\nNeeds a restart to take effect: tun\n"
    )
    assert format_reload({"reloaded": False, "error": "x.conf:3: bad"}) == (
        "Reload refused, configuration unchanged: x.conf:3: bad\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (0, "00:00:00"),
        (0.4, "00:00:00"),
        (59.6, "00:01:00"),
        (3661, "01:01:01"),
        (86399, "23:59:59"),
        (86400, "1d00h"),
        (6 * 86400 + 23 * 3600, "6d23h"),
        (15 * 86400, "2w1d"),
        (-5, "00:00:00"),
        (float("inf"), "never"),
    ],
)
def test_durations_in_ciscos_style(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_table_alignment() -> None:
    assert table(["A", "Num", "C"], [["xx", "1", ""], ["y", "100", "z"]], right=(1,)) == [
        "A   Num  C",
        "xx    1",
        "y   100  z",
    ]


# --------------------------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize(
    ("words", "daemon_command", "arg"),
    [
        (["show", "map-cache"], "map-cache", None),
        (["show", "map-cache", "10.0.0.1"], "map-cache", "10.0.0.1"),
        (["sh", "ma", "[3]2001:db8::1"], "map-cache", "[3]2001:db8::1"),
        (["s", "d"], "database", None),
        (["show", "rl"], "rlocs", None),
        (["show", "rt"], "rtr", None),
        (["show", "reg"], "registrations", None),
        (["sh", "st"], "stats", None),
        (["sh", "si"], "site", None),
        (["sh", "n"], "nat", None),
        (["clear", "map-cache"], "clear-map-cache", None),
        (["cl", "m", "10.0.0.0/8"], "clear-map-cache", "10.0.0.0/8"),
        (["reload"], "reload", None),
        (["rel"], "reload", None),
        (["v"], "version", None),
    ],
)
def test_commands_and_abbreviations(words: list[str], daemon_command: str, arg: str | None) -> None:
    command, got = parse_command(words)
    assert (command.request, got) == (daemon_command, arg)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([], "missing command"),
        (["show"], "incomplete command 'show': expected database | map-cache"),
        (["s"], "incomplete command 'show'"),
        (
            ["sh", "r"],
            "ambiguous command 'r' after 'show': referral-cache | registrations | rlocs | rtr",
        ),
        (["show", "routes"], "unknown command 'routes' after 'show'"),
        (["frobnicate"], "unknown command 'frobnicate': expected clear | reload | show | version"),
        (["show", "stats", "extra"], "too many arguments: 'extra' (usage: show stats)"),
        (["show", "map-cache", "a", "b"], "usage: show map-cache [EID]"),
        (["version", "now"], "too many arguments"),
    ],
)
def test_bad_commands(words: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_command(words)


def test_every_command_is_reachable_by_its_full_words() -> None:
    for command in COMMANDS:
        assert parse_command(list(command.words)) == (command, None)


def test_eid_and_prefix_arguments() -> None:
    assert parse_eid("10.0.0.1") == (0, ipaddress.ip_address("10.0.0.1"))
    assert parse_eid("[42]2001:db8::1") == (42, ipaddress.ip_address("2001:db8::1"))
    assert parse_prefix("10.0.0.0/8") == (None, ipaddress.ip_network("10.0.0.0/8"))
    assert parse_prefix("[0]2001:db8::/32") == (0, ipaddress.ip_network("2001:db8::/32"))
    for bad in ("10.0.0.0/8", "[x]1.2.3.4", "[16777216]1.2.3.4", "host.example", "[1]", ""):
        with pytest.raises(UsageError):
            parse_eid(bad)
    for bad in ("10.0.0.1/8", "[1]nope", "[99999999]10.0.0.0/8"):
        with pytest.raises(UsageError):
            parse_prefix(bad)


def test_requests_carry_the_prefix_and_instance() -> None:
    clear = next(c for c in COMMANDS if c.request == "clear-map-cache")
    show = next(c for c in COMMANDS if c.request == "map-cache")
    assert build_request(clear, None) == {}
    assert build_request(clear, "10.0.0.0/8") == {"prefix": "10.0.0.0/8"}
    assert build_request(clear, "[7]10.0.0.0/8") == {"prefix": "10.0.0.0/8", "instance-id": 7}
    # the daemon matches: the longest prefix holding an EID, or exactly an EID-prefix
    assert build_request(show, "10.0.0.1") == {"eid": "10.0.0.1", "instance-id": 0}
    assert build_request(show, "[7]2001:db8::1") == {"eid": "2001:db8::1", "instance-id": 7}
    assert build_request(show, "10.0.0.0/8") == {"prefix": "10.0.0.0/8", "instance-id": 0}
    assert build_request(show, "[3]2001:db8::/32") == {"prefix": "2001:db8::/32", "instance-id": 3}
    for bad in ("10.0.0.1/8", "[x]10.0.0.1", "nope/8"):
        with pytest.raises(UsageError):
            build_request(show, bad)


# --------------------------------------------------------------------------------------------
# EID filtering


def _match(eid: str) -> list[str]:
    iid, address = parse_eid(eid)
    return [
        f"[{e['instance-id']}]{e['eid-prefix']}" for e in longest_match(MAP_CACHE, iid, address)
    ]


def test_longest_match_of_an_eid() -> None:
    assert _match("198.51.100.17") == ["[0]198.51.100.16/28"]
    assert _match("198.51.100.1") == ["[0]198.51.100.0/24"]
    assert _match("10.1.2.3") == ["[0]0.0.0.0/0"]
    assert _match("[7]198.51.100.17") == ["[7]198.51.100.16/28"]
    assert _match("[7]198.51.100.1") == []  # the instance's own entries only
    assert _match("[7]2001:db8:100:2::99") == ["[7]2001:db8:100:2::/64"]
    assert _match("2001:db8:100:2::99") == []  # no IPv6 default in instance 0
    assert (
        longest_match([{"instance-id": 0, "eid-prefix": "junk"}], 0, parse_eid("1.1.1.1")[1]) == []
    )


# --------------------------------------------------------------------------------------------
# The IO shell against a fake daemon


@contextlib.contextmanager
def fake_daemon(path: str, answer: Any) -> Iterator[list[dict[str, Any]]]:
    """A control socket answering every request with ``answer`` (a response object, or a
    function of the request); yields the requests received."""
    seen: list[dict[str, Any]] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(5)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    data = b""
                    while not data.endswith(b"\n"):
                        data += conn.recv(4096)
                    req = json.loads(data)
                    seen.append(req)
                    response = answer(req) if callable(answer) else answer
                    conn.sendall(json.dumps(response).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def _by_command(req: dict[str, Any]) -> dict[str, Any]:
    results = {
        "map-cache": MAP_CACHE,
        "stats": STATS,
        "clear-map-cache": {"cleared": 2},
        "reload": {"reloaded": False, "error": "/etc/lispd/lispd.conf:9: oops"},
        "registrations": [],
        "version": {"version": "0.1.0", "name": "n1"},
    }
    if req["command"] not in results:
        return {"ok": False, "error": f"unknown command {req['command']!r}"}
    return {"ok": True, "result": results[req["command"]]}


def test_main_tables_json_and_exit_statuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(tmp_path / "c.sock")
    with fake_daemon(sock, _by_command) as seen:
        assert lispctl.main(["-s", sock, "show", "stats"]) == 0
        assert capsys.readouterr().out == format_stats(STATS)

        assert lispctl.main(["-s", sock, "--json", "show", "stats"]) == 0
        assert json.loads(capsys.readouterr().out) == STATS

        assert lispctl.main(["-s", sock, "show", "map-cache", "198.51.100.20", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == [MAP_CACHE[2]]
        assert lispctl.main(["-s", sock, "show", "map-cache", "[9]10.0.0.1"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == "lispctl: no map-cache entry holds [9]10.0.0.1\n"
        assert lispctl.main(["-s", sock, "--json", "show", "map-cache", "[9]10.0.0.1"]) == 1
        assert json.loads(capsys.readouterr().out) == []

        assert lispctl.main(["-s", sock, "clear", "map-cache", "[3]10.0.0.0/8"]) == 0
        assert capsys.readouterr().out == "Cleared 2 learned map-cache entries for [3]10.0.0.0/8\n"
        assert seen[-1] == {"command": "clear-map-cache", "prefix": "10.0.0.0/8", "instance-id": 3}

        assert lispctl.main(["-s", sock, "reload"]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            "lispctl: Reload refused, configuration unchanged: /etc/lispd/lispd.conf:9: oops\n"
        )
        assert lispctl.main(["-s", sock, "--json", "reload"]) == 1
        assert json.loads(capsys.readouterr().out)["reloaded"] is False

        assert lispctl.main(["-s", sock, "show", "registrations"]) == 0
        assert capsys.readouterr().out.startswith("LISP registrations: 0 Map-Servers\n")
        assert lispctl.main(["-s", sock, "show", "nat"]) == 1
        assert capsys.readouterr().err == "lispctl: lispd: unknown command 'nat'\n"
        assert [r["command"] for r in seen].count("map-cache") == 3


def test_config_names_the_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(tmp_path / "c.sock")
    config = tmp_path / "lispd.conf"
    only_site = configs.site("s", "k", "10.0.0.0/8")
    doc = configs.msmr(
        "n1", ("192.0.2.1",), (only_site,), roles=("map-server",), control_socket=sock
    )
    config.write_text(configs.toml(doc))
    with fake_daemon(sock, _by_command):
        assert lispctl.main(["-c", str(config), "version"]) == 0
    assert capsys.readouterr().out == "lispd 0.1.0, node n1\n"
    config.write_text("[daemon\n")
    assert lispctl.main(["-c", str(config), "version"]) == 1
    assert str(config) in capsys.readouterr().err


def test_unreachable_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.sock")
    assert lispctl.main(["-s", missing, "show", "stats"]) == 1
    assert capsys.readouterr().err == (
        f"lispctl: lispd is not running? cannot connect to {missing}: No such file or directory\n"
    )
    stale = str(tmp_path / "stale.sock")  # a socket file nobody listens on
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(stale)
    assert lispctl.main(["-s", stale, "version"]) == 1
    assert capsys.readouterr().err == (
        f"lispctl: lispd is not running? cannot connect to {stale}: Connection refused\n"
    )


def test_silent_or_garbled_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(tmp_path / "c.sock")
    with fake_daemon(sock, lambda _req: "not an object"):
        assert lispctl.main(["-s", sock, "version"]) == 1
    assert "malformed response" in capsys.readouterr().err
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(sock := str(tmp_path / "mute.sock"))
        mute.listen(1)
        assert lispctl.main(["-s", sock, "--timeout", "0.2", "version"]) == 1
    assert capsys.readouterr().err == f"lispctl: no answer from lispd at {sock} within 0.2 s\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["show"],
        ["bogus"],
        ["show", "map-cache", "not-an-eid"],
        ["clear", "map-cache", "10.0.0.1/8"],
        ["-s", "a", "-c", "b", "version"],
        ["--timeout", "0", "version"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        lispctl.main(argv)
    assert exc.value.code == 2
    assert "lispctl: error:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Tables in pages


def test_a_table_in_one_page_prints_as_it_always_did() -> None:
    printer = lispctl.TablePrinter(lispctl.MAP_CACHE_FORMAT)
    text = printer.page(MAP_CACHE, len(MAP_CACHE) + 3, last=True) + printer.end(5, None)
    assert text == format_map_cache(MAP_CACHE)  # the title counts what is shown
    empty = lispctl.TablePrinter(lispctl.SITE_FORMAT)
    assert empty.page([], 0, last=True) + empty.end(0, None) == format_site([])


def test_pages_print_as_they_come_columns_widening_when_needed() -> None:
    printer = lispctl.TablePrinter(lispctl.MAP_CACHE_FORMAT)
    first = printer.page(MAP_CACHE[:2], 9, last=False)
    assert first.splitlines() == [
        "LISP map-cache: 9 entries",
        "",
        "Inst-ID  EID-prefix       Action            Source     TTL       Locator  Pri/Wgt  State",
        "0        0.0.0.0/0        send-map-request  static     never     -        -        -",
        "0        198.51.100.0/24  native-forward    map-reply  00:01:00  -        -        -",
    ]
    second = printer.page(MAP_CACHE[4:], 9, last=True)
    assert second.splitlines() == [  # wider columns from here on
        "7        2001:db8:100:2::/64  encapsulate       map-reply  00:15:00  "
        "192.0.2.1->192.0.2.5->192.0.2.14  1/100    up"
    ]
    assert printer.end(9, None) == "(3 of 9 shown: the table changed while it was listed)\n"
    assert printer.end(9, 3) == "(the first 3 of 9 shown: --limit 3)\n"


def test_json_array_written_element_by_element_is_format_json() -> None:
    for entries in (MAP_CACHE, MAP_CACHE[:1], []):
        array = lispctl.JsonArrayPrinter()
        text = array.page(entries[:2]) + array.page(entries[2:]) + array.end()
        assert text == format_json(entries)


def _paging_daemon(
    table: list[dict[str, Any]], per_page: int | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A fake daemon serving ``table`` in pages (of what the request counts, or at most
    ``per_page``) under one cursor; an un-paged request gets the whole table."""

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if "cursor" not in req:
            return {"ok": True, "result": table}
        if req.get("close"):
            return {"ok": True, "result": {"entries": [], "cursor": None, "total": len(table)}}
        start = 0 if req["cursor"] is None else int(req["cursor"])
        end = start + min(req["count"], per_page or req["count"])
        more = end < len(table)
        page = {"entries": table[start:end], "cursor": str(end) if more else None}
        return {"ok": True, "result": {**page, "total": len(table)}}

    return answer


def test_lispctl_fetches_pages_and_prints_every_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = [dict(MAP_CACHE[k % 5], **{"eid-prefix": f"10.0.{k // 256}.{k % 256}/32"})
             for k in range(lispctl.PAGE_SIZE * 3 + 7)]  # fmt: skip
    sock = str(tmp_path / "c.sock")
    with fake_daemon(sock, _paging_daemon(table)) as seen:
        assert lispctl.main(["-s", sock, "show", "map-cache"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"LISP map-cache: {len(table)} entries\n\nInst-ID ")
        assert [line.split()[1] for line in out.splitlines()[3:] if line[:1] in "07"] == [
            e["eid-prefix"] for e in table
        ]
        assert [r.get("cursor") for r in seen] == [None, "100", "200", "300"]
        assert all(r["count"] == lispctl.PAGE_SIZE for r in seen)

        seen.clear()
        assert lispctl.main(["-s", sock, "--json", "show", "map-cache"]) == 0
        assert json.loads(capsys.readouterr().out) == table

        # --limit: the first N, then the listing is closed at the daemon
        seen.clear()
        assert lispctl.main(["-s", sock, "--limit", "150", "show", "map-cache"]) == 0
        out = capsys.readouterr().out
        assert out.endswith(f"(the first 150 of {len(table)} shown: --limit 150)\n")
        assert [r.get("count") for r in seen] == [100, 50, None]
        assert seen[-1] == {"command": "map-cache", "cursor": "150", "close": True}
        assert lispctl.main(["-s", sock, "--json", "--limit", "3", "sh", "ma"]) == 0
        assert json.loads(capsys.readouterr().out) == table[:3]

        # every table command pages the same way
        for words, title in (
            (["show", "database"], "LISP database: "),
            (["show", "site"], "LISP site registrations: "),
            (["show", "rlocs"], "LISP RLOC probing: "),
            (["show", "rtr"], "LISP RTR NAT bindings: "),
        ):
            seen.clear()
            assert lispctl.main(["-s", sock, "--limit", "2", *words]) == 0
            assert capsys.readouterr().out.startswith(title)
            assert seen[0]["command"] == lispctl.parse_command(words)[0].request
            assert seen[0]["cursor"] is None and seen[0]["count"] == 2


def test_a_daemon_older_than_paging_answers_with_the_whole_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(tmp_path / "c.sock")
    with fake_daemon(sock, {"ok": True, "result": MAP_CACHE}) as seen:
        assert lispctl.main(["-s", sock, "show", "map-cache"]) == 0
        assert capsys.readouterr().out == format_map_cache(MAP_CACHE)
        assert lispctl.main(["-s", sock, "--limit", "2", "show", "map-cache"]) == 0
        assert capsys.readouterr().out.endswith("(the first 2 of 5 shown: --limit 2)\n")
        # an EID or a prefix: matched here when the daemon answers with everything
        assert lispctl.main(["-s", sock, "--json", "show", "map-cache", "[7]198.51.100.17"]) == 0
        assert json.loads(capsys.readouterr().out) == [MAP_CACHE[3]]
        assert lispctl.main(["-s", sock, "--json", "show", "map-cache", "198.51.100.0/24"]) == 0
        assert json.loads(capsys.readouterr().out) == [MAP_CACHE[1]]
        assert lispctl.main(["-s", sock, "show", "map-cache", "198.51.100.0/25"]) == 1
        assert capsys.readouterr().err == "lispctl: no map-cache entry for [0]198.51.100.0/25\n"
        assert seen[-1] == {"command": "map-cache", "prefix": "198.51.100.0/25", "instance-id": 0}


def test_a_failing_page_is_an_error_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon forgot the listing (its idle timeout) or refuses a new one: exit 1, what was
    printed stays printed."""

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if req["cursor"] is None:
            return {"ok": True, "result": {"entries": MAP_CACHE[:2], "cursor": "c1", "total": 5}}
        return {"ok": False, "error": "unknown or expired cursor 'c1'"}

    sock = str(tmp_path / "c.sock")
    with fake_daemon(sock, answer):
        assert lispctl.main(["-s", sock, "show", "map-cache"]) == 1
        out, err = capsys.readouterr()
        assert out.startswith("LISP map-cache: 5 entries\n") and "198.51.100.0/24" in out
        assert err == "lispctl: lispd: unknown or expired cursor 'c1'\n"


def test_limit_must_be_a_positive_number(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit) as exit_info:
            lispctl.main(["--limit", bad, "show", "map-cache"])
        assert exit_info.value.code == 2
    assert "--limit" in capsys.readouterr().err
