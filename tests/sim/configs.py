"""lispd.conf documents for the in-memory harness, built as dicts and written as TOML text that
lispd's own loader (:func:`lispd.config.parse_config`) parses and validates.

A document is a plain dict: a dict value is a ``[table]``, a list of dicts an array of tables
(``[[database-mapping]]``), a dict inside a list an inline table.  The builders below return
such dicts, so a scenario can change any key before handing it to
:meth:`tests.sim.network.Network.add_node`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Doc = dict[str, Any]


# --- TOML -------------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML text (top-level scalars first, then tables, then arrays of tables)."""
    lines = [f"{k} = {_value(v)}" for k, v in doc.items() if not _is_table(v)]
    for key, value in doc.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{key}]"] + [f"{k} = {_value(v)}" for k, v in value.items()]
        elif _is_table(value):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
    )


# --- pieces -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """An EID site as a Map-Server knows it: a name, its key and its EID-prefixes."""

    name: str
    key: str
    prefixes: tuple[str, ...]
    iid: int = 0

    def table(self) -> Doc:
        """Its ``[[site]]`` table."""
        return {
            "name": self.name,
            "key": self.key,
            "eid-prefixes": [{"eid-prefix": p, "instance-id": self.iid} for p in self.prefixes],
        }


def rloc(address: str, priority: int = 1, weight: int = 100) -> Doc:
    """An RLOC inline table."""
    return {"address": address, "priority": priority, "weight": weight}


def elp(*hops: str, priority: int = 1, weight: int = 100) -> Doc:
    """An Explicit Locator Path RLOC: ``hops`` in forwarding order, the last the ETR."""
    return {"elp": list(hops), "priority": priority, "weight": weight}


def mapping(prefix: str, rlocs: Iterable[Doc], iid: int = 0) -> Doc:
    """A ``[[database-mapping]]`` or ``[[map-cache]]`` table with RLOCs."""
    return {"eid-prefix": prefix, "instance-id": iid, "rlocs": list(rlocs)}


def negative(prefix: str, action: str = "send-map-request", iid: int = 0) -> Doc:
    """A ``[[map-cache]]`` table with an action (default: resolve through the Map-Resolver)."""
    return {"eid-prefix": prefix, "instance-id": iid, "action": action}


def base(name: str, roles: Sequence[str], rlocs: Sequence[str]) -> Doc:
    """[daemon] and [underlay] of a node with no control socket."""
    return {
        "daemon": {"name": name, "roles": list(roles), "control-socket": ""},
        "underlay": {"rlocs": list(rlocs)},
    }


def probing(interval: float, timeout: float, down_after: int = 3, map_cache: bool = True) -> Doc:
    """A ``[probing]`` table."""
    return {
        "interval": interval,
        "timeout": timeout,
        "down-after": down_after,
        "map-cache": map_cache,
    }


# --- nodes ------------------------------------------------------------------------------------


def xtr(
    name: str,
    rlocs: Sequence[str],
    database: Iterable[Doc],
    *,
    ms: str | None = None,
    key: str | None = None,
    proxy_reply: bool = False,
    mr: str | None = None,
    resolve: Iterable[str] = (),
    map_cache: Iterable[Doc] = (),
    petrs: Iterable[str] = (),
    nat: Doc | None = None,
    roles: Sequence[str] = ("itr", "etr"),
    **tables: Any,
) -> Doc:
    """An xTR: ``database`` mappings, registered with Map-Server ``ms`` under ``key`` when
    given; destinations in ``resolve`` (prefixes) asked of Map-Resolver ``mr`` (default:
    ``ms``); static ``map_cache`` entries; ``petrs``; ``nat``: its ``[nat-traversal]`` table.
    Keyword ``tables`` add top-level tables (``probing=...``, ``registration=...``)."""
    doc = base(name, roles, rlocs)
    doc["database-mapping"] = list(database)
    cache = list(map_cache) + [negative(p) for p in resolve]
    if cache:
        doc["map-cache"] = cache
    if ms is not None:
        assert key is not None, "a Map-Server needs the site's key"
        doc["map-server"] = [{"address": ms, "key": key, "proxy-reply": proxy_reply}]
    resolver = mr if mr is not None else ms if resolve else None
    if resolver is not None:
        doc["map-resolver"] = [{"address": resolver}]
    if petrs:
        doc["petr"] = [{"address": p} for p in petrs]
    if nat is not None:
        doc["nat-traversal"] = nat
    doc.update({k.replace("_", "-"): v for k, v in tables.items()})
    return doc


def msmr(
    name: str,
    rlocs: Sequence[str],
    sites: Iterable[Site],
    *,
    rtr_rlocs: Sequence[str] = (),
    negative_ttl: int | None = None,
    registration_timeout: float | None = None,
    roles: Sequence[str] = ("map-server", "map-resolver"),
    **tables: Any,
) -> Doc:
    """A Map-Server/Map-Resolver of ``sites``; ``rtr_rlocs`` are handed to xTRs behind NAT;
    ``negative_ttl`` (minutes) of its negative Map-Replies; ``registration_timeout`` (seconds)
    after which a registration not refreshed is forgotten."""
    doc = base(name, roles, rlocs)
    system: Doc = {}
    if rtr_rlocs:
        system["rtr-rlocs"] = list(rtr_rlocs)
    if negative_ttl is not None:
        system["negative-ttl"] = negative_ttl
    if registration_timeout is not None:
        system["registration-timeout"] = registration_timeout
    if system:
        doc["mapping-system"] = system
    doc["site"] = [s.table() for s in sites]
    doc.update({k.replace("_", "-"): v for k, v in tables.items()})
    return doc


def rtr(
    name: str, rlocs: Sequence[str], *, mr: str, petrs: Iterable[str] = (), **tables: Any
) -> Doc:
    """An RTR resolving through Map-Resolver ``mr``."""
    doc = base(name, ["rtr"], rlocs)
    doc["map-resolver"] = [{"address": mr}]
    if petrs:
        doc["petr"] = [{"address": p} for p in petrs]
    doc.update({k.replace("_", "-"): v for k, v in tables.items()})
    return doc
