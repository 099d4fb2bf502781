"""The independent oracle: ask tshark (Wireshark 4.0.17) what our bytes mean.

Every wire test builds packets with our codecs, frames them with scapy (:func:`udp_packet`, so
the IP/UDP layers are not ours either), and asserts on what tshark decodes::

    from tests import oracle

    pytestmark = oracle.TSHARK_MARKS          # @pytest.mark.tshark + skip when tshark is absent

    def test_map_request_nonce():
        pkt = oracle.udp_packet("192.0.2.1", "192.0.2.2", 61000, 4342, encode(msg))
        (frame,) = oracle.tshark_frames([pkt])
        oracle.assert_clean(frame)
        assert frame["lisp.nonce"] == ["0x0102030405060708"]

API
---
``udp_packet(src, dst, sport, dport, payload, ttl=64)``
    IPv4 or IPv6 + UDP built with scapy.  UDP checksum 0 for IPv4 to port 4341 (as an ITR
    sends), a real checksum everywhere else.
``tshark_frames(packets, extra_args=())`` / ``tshark_file_frames(path, extra_args=())``
    One flattened dict per frame: field name -> list of its string values in order of
    appearance anywhere in the frame (outer headers first, then inner ones: for an ECM or a
    data packet ``frame["ip.src"] == [outer_src, inner_src]`` and an ECM'd Map-Request has
    ``frame["lisp.type"] == ["8", "1"]``).  Absent fields are absent keys (use ``.get(k, [])``).
    Three synthetic keys are always present:

    * ``"_malformed"``: messages of ``_ws.malformed`` items ("Malformed Packet (Exception
      occurred)": the dissector ran past the end of the data);
    * ``"_expert"``: every expert item of severity warning or error, formatted
      ``"<severity> <expert field>: <message>"``, e.g.
      ``"warning lisp-data.flags.en_invalid: Invalid flag combination: if E is set, N MUST be
      set"``, ``"error udp.checksum.bad: Bad checksum [should be 0x48fd]"``,
      ``"error lisp.unexpected_field: Unexpected EID prefix AFI (7680), cannot decode"`` and
      ``"error _ws.malformed.expert: Malformed Packet (Exception occurred)"``;
    * ``"_trailing"``: hex (``"01:02"``) of bytes tshark left undissected *inside* a LISP
      control message (a ``data`` item under the ``lisp`` layer): trailing junk, or a part
      Wireshark 4.0 does not know.

    The runs use ``-n -T json -o udp.check_checksum:TRUE -o ip.check_checksum:TRUE`` and an
    empty ``WIRESHARK_CONFIG_DIR`` (no user preferences).  ``extra_args`` are appended, e.g.
    ``decode_as(61005, "lisp-data")`` == ``("-d", "udp.port==61005,lisp-data")``.
``tshark_trees(...)`` / ``tshark_file_trees(...)``, ``subtrees(tree, name)``, ``flatten(tree)``
    The unflattened JSON (a :class:`Tree` per frame: the ``layers`` object as (key, value)
    pairs, duplicate keys kept) for per-record assertions::

        tree, = oracle.tshark_trees([pkt])
        records = [oracle.flatten(t) for t in oracle.subtrees(tree, "lisp.mapping")]
        assert records[1]["lisp.loc.locator"] == ["192.0.2.11"]

``assert_clean(frame)``
    Fails the test listing ``_malformed``, ``_expert`` and ``_trailing`` entries, if any.
``requires_tshark`` (skipif mark), ``TSHARK_MARKS`` (``[pytest.mark.tshark, requires_tshark]``).

Field cheat-sheet (tshark 4.0.17, exactly as the JSON prints the values)
-----------------------------------------------------------------------
Value formats: every value is a string.  Integers with BASE_DEC print in decimal ("1440");
BASE_HEX fields print zero-padded lowercase hex of the field width ("0x0001", "0x88",
"0x000000"); booleans print ``"1"`` / ``"0"`` (never "True"); byte strings print colon hex
("00:01:0a") and ``""`` when empty; IPv4 dotted quad, IPv6 compressed lowercase
("2001:db8::10").  Bit fields carved out of a wider field by a mask are shifted down (see
``lisp.mreq.flags``).

Which dissector: UDP port 4342 -> ``lisp`` (control), 4341 -> ``lisp-data``.  Wireshark tries
the lower port first: control sent from source port 4341 to 4342 still decodes as ``lisp``,
but data sent *from* 4342 (or any port below the destination) to a NAT-translated port decodes
as ``lisp``; pass ``decode_as(port, "lisp-data")`` (likewise data on 8472 etc.).

Common header (all control types)
    ``lisp.type``               "1" Map-Request, "2" Map-Reply, "3" Map-Register, "4" Map-Notify,
                                "5" Map-Notify-Ack (**not dissected**: only lisp.type, the rest is
                                a sibling ``data`` layer), "6" Map-Referral, "7" Info, "8" ECM
    ``lisp.records``            record count, decimal (absent for Info and ECM)
    ``lisp.nonce``              "0x0102030405060708" (always 16 hex digits)
    ``lisp.keyid``              16-bit hex, key-id and alg-id bytes together: "0x0001" = SHA-1,
                                "0x0002" = SHA-256 (Map-Register, Map-Notify, Info)
    ``lisp.authlen``            decimal ("20");  ``lisp.auth``: colon hex, "" when length 0
    ``lisp.xtrid`` / ``lisp.siteid``  colon hex, 16 / 8 bytes (present when the I bit is set)
Map-Request (type 1)
    ``lisp.mreq.flags``         the six known bits shifted down: A 0x20, M 0x10, P 0x08, S 0x04,
                                p 0x02, s 0x01 -> "0x000007" for S+p+s
    ``lisp.mreq.flags.auth`` (A), ``.mrp`` (M), ``.probe`` (P), ``.smr`` (S), ``.pitr`` (p),
    ``.smri`` (s)               "1"/"0"
    ``lisp.mreq.res``           the reserved bits shifted down: RFC 9301 L -> 0x002, D -> 0x001
                                (L+D = "0x000003")
    ``lisp.irc``                IRC as on the wire, i.e. ITR-RLOC count minus one ("0")
    source EID                  ``lisp.mreq.srceid.afi`` ("0", "1", "2", "16387"); AFI 0 gives
                                ``lisp.mreq.srceid.string`` = "not set"; ``lisp.mreq.srceid.ipv4``
                                but ``lisp.mreq.srceid_ipv6`` (underscore!); an IID LCAF gives the
                                ``lisp.lcaf.*`` fields below
    ITR-RLOC (one subtree each) ``lisp.mreq.itr_rloc.afi``, ``lisp.mreq.itr_rloc_ipv4``,
                                ``lisp.mreq.itr_rloc_ipv6`` (underscores!)
    record                      ``lisp.mreq.record.prefix.length`` (mask-len, decimal),
                                ``lisp.mreq.record.prefix.afi``, ``.prefix.ipv4``,
                                ``.prefix.ipv6``, ``lisp.mreq.record.res`` ("0x00")
    M=1 mapping record          decoded (under ``lisp.mrep.record``) with the EID-record fields
Map-Reply (type 2)
    ``lisp.mrep.flags.probe`` (P), ``.enlr`` (E), ``.sec`` (S)   "1"/"0" (no combined field);
    ``lisp.mrep.res`` shifted reserved bits (a lispers.net hop count shows up here)
EID-record (Map-Reply, Map-Register, Map-Notify, Map-Referral; one ``lisp.mapping`` subtree each)
    ``lisp.mapping.ttl``        decimal minutes ("1440", "4294967295")
    ``lisp.mapping.loccnt``     locator count;  ``lisp.mapping.eid.masklen``  EID mask-len
    ``lisp.mapping.act``        ACT decimal ("3" = drop);  ``lisp.mapping.auth``  A bit "1"/"0"
    ``lisp.mapping.ver``        map-version decimal ("4095");  ``lisp.mapping.res1/res2`` "0x0000"
    ``lisp.mapping.eid.afi``    "1", "2", "16387";  ``lisp.mapping.eid.ipv4`` / ``.eid.ipv6``
    EID with IID LCAF           ``lisp.mapping.eid.afi`` = "16387" and then ``lisp.lcaf.type`` =
                                "2", ``lisp.lcaf.iid`` (decimal, "123"), ``lisp.lcaf.iid.afi``,
                                ``lisp.lcaf.iid.ipv4`` / ``lisp.lcaf.iid.ipv6``; the IID
                                mask-len (Rsvd2) is ``lisp.lcaf.res2`` ("0x00")
    Map-Referral only           ``lisp.referral.incomplete``, ``lisp.referral.sigcnt``,
                                ``lisp.mref.res``
Locator record (one ``lisp.loc`` subtree each)
    ``lisp.loc.priority``, ``lisp.loc.weight``, ``lisp.loc.multicast_priority``,
    ``lisp.loc.multicast_weight``                      decimal
    ``lisp.loc.flags``          "0x0007";  ``lisp.loc.flags.local`` (L), ``.probe`` (p),
                                ``.reach`` (R) "1"/"0";  ``lisp.loc.flags.res`` "0x0000"
    ``lisp.loc.afi``            "1", "2", "16387"
    ``lisp.loc.locator``        the address as a string ("192.0.2.10", "2001:db8::10");
                                **absent** when the locator is an LCAF (look at lisp.lcaf.*)
LCAF (any position; one ``lisp.lcaf`` subtree each)
    ``lisp.lcaf.type`` (decimal), ``lisp.lcaf.length`` (decimal), ``lisp.lcaf.flags`` /
    ``lisp.lcaf.res1`` / ``lisp.lcaf.res2`` ("0x00"), ``lisp.lcaf.header`` (6 bytes colon hex)
    AFI-list (type 1)           per item ``lisp.lcaf.afi_list.afi``, ``lisp.lcaf.afi_list.ipv4``,
                                ``.ipv6``, ``.mac``, ``.dn``
    ELP (type 10)               per hop ``lisp.lcaf.elp_hop.flags`` ("0x0007"),
                                ``lisp.lcaf.elp_hop.flags.local`` (L, "Lookup"),
                                ``lisp.lcaf.elp_hop.flags.probe`` (P),
                                ``lisp.lcaf_elp_hop.flags.strict`` (S; note "lcaf_elp_hop"),
                                ``lisp.lcaf.elp_hop.afi``, ``lisp.lcaf.elp_hop.ipv4`` / ``.ipv6``
    NAT-traversal (type 7)      ``lisp.lcaf.natt.msport``, ``lisp.lcaf.natt.etrport`` (decimal),
                                then one ``lisp.lcaf.natt.rloc`` subtree per address in order
                                global ETR, MS, private ETR, RTR...: ``lisp.lcaf.natt.rloc.afi``
                                ("0" for an empty one, which then has no address field),
                                ``lisp.lcaf.natt.rloc.ipv4`` / ``.ipv6``
    Length sanity               an LCAF Length larger than the remaining bytes is **not**
                                flagged by tshark 4.0 (no expert, no malformed)
Map-Register (type 3)
    ``lisp.mreg.flags.pmr`` (P), ``.sec`` (S), ``.xtrid`` (I), ``.rtr`` (R, 0x01000000),
    ``lisp.mreg.flags.wmn`` (M, want-map-notify)        "1"/"0"
    ``lisp.mreg.res``           shifted reserved bits: RFC 9301 E -> 0x8, T -> 0x4, a -> 0x2,
                                R(0x200) -> 0x1
Map-Notify (type 4)
    ``lisp.mnot.flags.xtrid`` (I), ``lisp.mnot.flags.rtr`` (R); ``lisp.mnot.res``
    R=1 makes Wireshark expect an MS-RTR authentication block after the records (and after
    xTR-ID/site-ID): ``lisp.msrtr.keyid``, ``lisp.msrtr.authlen``, ``lisp.msrtr.auth``; without
    it the frame is Malformed.
ECM (type 8)
    ``lisp.ecm.flags.sec`` (S), ``lisp.ecm.flags.ddt`` (D) "1"/"0"; ``lisp.ecm.res`` is the
    unshifted 32-bit word masked with 0x03ffffff: E 0x02000000, M 0x01000000, R 0x00400000,
    N 0x00200000 (E+M+R+N = "0x03600000").  The inner IP/UDP/LISP follow as further ``ip``/
    ``ipv6``, ``udp`` and ``lisp`` layers (values appended after the outer ones).  S=1 does not
    make tshark look for ECM authentication data.
Info-Request / Info-Reply (type 7)
    ``lisp.info.r``             "0" request, "1" reply;  ``lisp.info.res1`` "0x00000000"
    ``lisp.keyid``, ``lisp.authlen``, ``lisp.auth`` as above;  ``lisp.info.ttl`` decimal
    ``lisp.info.res2`` "0x00";  ``lisp.info.prefix.masklen``, ``lisp.info.prefix.afi``,
    ``lisp.info.prefix.ipv4`` / ``.ipv6``
    ``lisp.info.afi``           "0" (request) or "16387" (reply, then the NAT LCAF fields)
LISP data header (``lisp-data`` layer, UDP 4341)
    ``lisp-data.flags``         "0x88";  ``lisp-data.flags.nonce`` (N), ``.lsb`` (L), ``.enr`` (E),
                                ``.mv`` (V), ``.iid`` (I) "1"/"0";  ``lisp-data.flags.res``
                                "0x00" (R and K bits, 0x07)
    ``lisp-data.nonce``         **decimal** ("11259375" for 0xabcdef), present when N=1
    ``lisp-data.mapver``        "0x005007" when V=1, with ``lisp-data.srcmapver`` ("5") and
                                ``lisp-data.dstmapver`` ("7") decimal
    ``lisp-data.iid``           decimal ("291"; "16777215" for 0xffffff), present when I=1
    ``lisp-data.lsb``           "0x00000005" (L=1, I=0);  ``lisp-data.lsb8`` "0x03" (L=1, I=1)
    expert warnings             ``lisp-data.flags.en_invalid`` (E without N) and
                                ``lisp-data.flags.nv_invalid`` (N and V) appear in ``_expert``
    The inner packet follows as ip/ipv6 + transport layers.  A UDP payload shorter than 8
    bytes on 4341 is shown as plain ``data`` (no lisp-data layer, **no** malformed mark).
Malformed markers
    A truncated control message gives ``_malformed == ["Malformed Packet (Exception
    occurred)"]``.  Trailing bytes after a complete control message are not an error for
    tshark: they show up in ``_trailing`` (``data.data`` inside the lisp layer).
Expert severities (``_ws.expert.severity``): 1048576 comment, 2097152 chat, 4194304 note,
6291456 warning, 8388608 error; only warning and error land in ``_expert``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from lispd.tools.pcap import LINKTYPE_RAW, write_pcap

__all__ = [
    "TSHARK",
    "TSHARK_MARKS",
    "Tree",
    "assert_clean",
    "decode_as",
    "flatten",
    "requires_tshark",
    "subtrees",
    "tshark_file_frames",
    "tshark_file_trees",
    "tshark_frames",
    "tshark_trees",
    "udp_packet",
]

TSHARK = shutil.which("tshark")
requires_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark (the oracle) is not installed")
TSHARK_MARKS = [pytest.mark.tshark, requires_tshark]

LISP_DATA_PORT = 4341
SEVERITY_WARNING = 0x00600000
SEVERITY_ERROR = 0x00800000
_SEVERITY_NAMES = {
    0x00100000: "comment",
    0x00200000: "chat",
    0x00400000: "note",
    SEVERITY_WARNING: "warning",
    SEVERITY_ERROR: "error",
}
_SEVERITY_BY_NAME = {name: value for value, name in _SEVERITY_NAMES.items()}
_TSHARK_TIMEOUT = 120


class Tree(list):
    """A JSON object from tshark kept as its (key, value) pairs, so duplicate keys survive.

    Values are ``str``, nested :class:`Tree` objects, or (only with ``--no-duplicate-keys``)
    plain lists of those.
    """


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    """An IPv4 or IPv6 (chosen by the addresses) + UDP packet carrying ``payload``, via scapy.

    IPv4 packets to port 4341 carry UDP checksum 0 (as an ITR sends them); every other packet
    gets a real checksum computed by scapy.  ``ttl`` is the IPv4 TTL or the IPv6 hop limit.
    """
    from scapy.layers.inet import IP, UDP  # scapy is slow to import: only here
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    version = ipaddress.ip_address(src).version
    if ipaddress.ip_address(dst).version != version:
        raise ValueError(f"address families differ: {src} -> {dst}")
    if version == 4:
        udp = UDP(sport=sport, dport=dport)
        if dport == LISP_DATA_PORT:
            udp.chksum = 0
        pkt = IP(src=src, dst=dst, ttl=ttl) / udp / Raw(bytes(payload))
    else:
        pkt = IPv6(src=src, dst=dst, hlim=ttl) / UDP(sport=sport, dport=dport) / Raw(bytes(payload))
    return bytes(pkt)


def decode_as(port: int, protocol: str = "lisp") -> tuple[str, str]:
    """tshark arguments decoding UDP ``port`` as ``protocol`` ("lisp" or "lisp-data")."""
    return ("-d", f"udp.port=={port},{protocol}")


def _run_tshark(path: Path, extra_args: Sequence[str]) -> list[Tree]:
    if TSHARK is None:
        pytest.skip("tshark (the oracle) is not installed")
    with tempfile.TemporaryDirectory(prefix="lispd-tshark-conf-") as confdir:
        env = dict(os.environ, WIRESHARK_CONFIG_DIR=confdir)
        cmd = [
            TSHARK,
            "-n",
            "-r",
            str(path),
            "-T",
            "json",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            *extra_args,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=_TSHARK_TIMEOUT, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    if not proc.stdout.strip():
        return []
    frames = json.loads(proc.stdout, object_pairs_hook=Tree)
    layers: list[Tree] = []
    for frame in frames:
        source = _first(frame, "_source")
        found = _first(source, "layers") if isinstance(source, Tree) else None
        layers.append(found if isinstance(found, Tree) else Tree())
    return layers


def _first(tree: Tree, key: str) -> object:
    for k, v in tree:
        if k == key:
            return v
    return None


def tshark_file_trees(path: str | Path, extra_args: Iterable[str] = ()) -> list[Tree]:
    """tshark's decode of every frame of the capture file at ``path``, unflattened."""
    return _run_tshark(Path(path), tuple(extra_args))


def tshark_trees(packets: Iterable[bytes], extra_args: Iterable[str] = ()) -> list[Tree]:
    """tshark's decode of raw IP ``packets`` (one frame each), unflattened."""
    with tempfile.TemporaryDirectory(prefix="lispd-oracle-") as tmp:
        path = Path(tmp) / "oracle.pcap"
        path.write_bytes(write_pcap(list(packets), linktype=LINKTYPE_RAW))
        return tshark_file_trees(path, extra_args)


def tshark_frames(
    packets: Iterable[bytes], extra_args: Iterable[str] = ()
) -> list[dict[str, list[str]]]:
    """One flattened dict (field name -> list of string values) per packet; see module doc."""
    return [flatten(tree) for tree in tshark_trees(packets, extra_args)]


def tshark_file_frames(
    path: str | Path, extra_args: Iterable[str] = ()
) -> list[dict[str, list[str]]]:
    """One flattened dict per frame of the capture file at ``path``."""
    return [flatten(tree) for tree in tshark_file_trees(path, extra_args)]


def subtrees(tree: Tree, name: str) -> list[Tree]:
    """Every subtree stored under key ``name`` (e.g. "lisp.mapping", "lisp.loc",
    "lisp.mreq.itr_rloc", "lisp", "ip"), depth first in order of appearance."""
    found: list[Tree] = []

    def walk(node: Tree) -> None:
        for key, value in node:
            for item in value if type(value) is list else [value]:
                if isinstance(item, Tree):
                    if key == name:
                        found.append(item)
                    walk(item)

    walk(tree)
    return found


def _severity(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return _SEVERITY_BY_NAME.get(text.strip().lower(), 0)


def _expert_entry(expert: Tree) -> tuple[int, str, str]:
    """(severity, expert field name, message) of a ``_ws.expert`` subtree."""
    severity, field, message = 0, "", ""
    for key, value in expert:
        if not isinstance(value, str):
            continue
        if key == "_ws.expert.message":
            message = value
        elif key == "_ws.expert.severity":
            severity = _severity(value)
        elif not key.startswith("_ws.expert.") and not field:
            field = key
    return severity, field, message


def flatten(tree: Tree) -> dict[str, list[str]]:
    """Every string-valued field of ``tree`` (at any depth) -> its values in order, plus the
    ``_malformed``, ``_expert`` and ``_trailing`` lists described in the module docstring."""
    out: dict[str, list[str]] = {"_malformed": [], "_expert": [], "_trailing": []}

    def walk(node: Tree, in_lisp: bool) -> None:
        for key, value in node:
            items = value if type(value) is list else [value]
            for item in items:
                if isinstance(item, str):
                    out.setdefault(key, []).append(item)
                    continue
                if not isinstance(item, Tree):
                    continue
                if key == "_ws.expert":
                    severity, field, message = _expert_entry(item)
                    if severity >= SEVERITY_WARNING:
                        name = _SEVERITY_NAMES.get(severity, str(severity))
                        out["_expert"].append(f"{name} {field}: {message}")
                elif key == "_ws.malformed":
                    experts = subtrees(item, "_ws.expert")
                    messages = [_expert_entry(e)[2] for e in experts]
                    messages = [m for m in messages if m] or [
                        v for k, v in item if k == "_ws.malformed" and isinstance(v, str)
                    ]
                    out["_malformed"].extend(messages or ["Malformed Packet"])
                elif key == "data" and in_lisp:
                    out["_trailing"].extend(
                        v for k, v in item if k == "data.data" and isinstance(v, str)
                    )
                walk(item, in_lisp or key == "lisp")

    walk(tree, False)
    return out


def assert_clean(frame: dict) -> None:
    """Fail the calling test if tshark found the frame malformed, raised a warning/error
    expert item, or left bytes of a LISP control message undissected."""
    __tracebackhide__ = True
    problems = [f"malformed: {m}" for m in frame.get("_malformed", [])]
    problems += [f"expert: {m}" for m in frame.get("_expert", [])]
    problems += [f"undissected LISP bytes: {m}" for m in frame.get("_trailing", [])]
    if problems:
        where = ", ".join(frame.get("frame.number", []) + frame.get("frame.protocols", []))
        pytest.fail(f"tshark objects to frame {where}:\n  " + "\n  ".join(problems))
