"""lispd.conf for the tests, from one builder.

A configuration is a plain dict: the TOML document as :mod:`tomllib` reads it (kebab-case keys,
``[[...]]`` arrays as lists of dicts).  The usual nodes come ready-made, each a fresh dict:

>>> doc = xtr(map_resolver=addresses("192.0.2.10"), probing={"map-cache": False})
>>> doc["daemon"]
{'name': 'xtr1', 'roles': ['itr', 'etr'], 'control-socket': ''}
>>> config = parse_config(toml(doc))  # doctest: +SKIP

- :func:`xtr` (ITR + ETR: its EID-prefixes on its first RLOC), :func:`msmr` (Map-Server +
  Map-Resolver of some sites), :func:`rtr`, :func:`pxtr` (PITR + PETR resolving some EID
  space), and :func:`node` under them all (``[daemon]`` and ``[underlay]``).  Each takes the
  node's name, RLOCs and roles, and ``control_socket`` (default ``""``: none; ``None`` leaves
  the key out, for lispd's default path).
- Any other keyword argument names a top-level table, underscores for dashes
  (``map_cache=`` is ``[[map-cache]]``) and goes through :func:`merge`: a dict is merged into
  the table (a key given None is removed), anything else replaces it (a list of tables), None
  removes the table.
- Entries: :func:`mapping` (a database-mapping or positive map-cache entry), :func:`resolve`
  and :func:`negative` (negative map-cache entries), :func:`site`, :func:`map_server`,
  :func:`addresses` (``[[map-resolver]]`` and ``[[petr]]`` lists).
- :func:`toml` writes a document as lispd.conf text (tomli-w).

Tests about the parser itself write their TOML by hand: what they check is how a text (often a
broken one) is read, and the line an error names.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import tomli_w

Doc = dict[str, Any]
"""A lispd.conf document (or one of its tables)."""

Rloc = str | Mapping[str, Any]
"""An RLOC of a mapping: an address, or the whole inline table (``{"elp": [...]}``...)."""


def toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as lispd.conf text, laid out as an operator writes one: each table under its
    ``[name]`` header and each array of tables as ``[[name]]`` entries, in the document's order,
    the values written by tomli-w.  (tomli-w alone writes an array of short tables inline,
    ``map-cache = [{...}, ...]``, ahead of every table: a file nobody could add a
    ``[[map-cache]]`` to.)"""
    plain = {k: v for k, v in doc.items() if not _is_table(v) and not _is_tables(v)}
    sections = [tomli_w.dumps(plain)] if plain else []
    for name, value in doc.items():
        key = name if _BARE_KEY.fullmatch(name) else json.dumps(name)
        if _is_table(value):
            sections.append(_section(f"[{key}]", key, value))
        elif _is_tables(value):
            sections += [_section(f"[[{key}]]", key, entry) for entry in value]
    return "\n".join(sections)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(map(_is_table, value))


def _section(header: str, key: str, body: Mapping[str, Any]) -> str:
    """``body`` under ``header``.  A table inside it that tomli-w does not write inline (too
    long for a line) gets a header of its own, named from ``body``: name it from the file."""
    text = re.sub(r"^(\[\[?)", lambda m: f"{m.group(1)}{key}.", tomli_w.dumps(body), flags=re.M)
    return f"{header}\n{text}"


def _toml_name(name: str) -> str:
    return name.replace("_", "-")


def merge(doc: Mapping[str, Any], **tables: Any) -> Doc:
    """A copy of ``doc`` with ``tables`` applied (see the module documentation)."""
    out: Doc = copy.deepcopy(dict(doc))
    for name, value in tables.items():
        key = _toml_name(name)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            table = {**out.get(key, {}), **copy.deepcopy(dict(value))}
            out[key] = {k: v for k, v in table.items() if v is not None}
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- entries --------------------------------------------------------------------------------------


def _rloc(rloc: Rloc) -> Doc:
    return {"address": rloc} if isinstance(rloc, str) else dict(rloc)


def mapping(prefix: str, *rlocs: Rloc, instance_id: int | None = None) -> Doc:
    """A ``[[database-mapping]]`` or positive ``[[map-cache]]`` entry."""
    entry: Doc = {"eid-prefix": prefix}
    if instance_id is not None:
        entry["instance-id"] = instance_id
    entry["rlocs"] = [_rloc(r) for r in rlocs]
    return entry


def negative(prefix: str, action: str, *, instance_id: int | None = None) -> Doc:
    """A negative ``[[map-cache]]`` entry: ``drop``, ``native-forward`` or
    ``send-map-request``."""
    entry: Doc = {"eid-prefix": prefix}
    if instance_id is not None:
        entry["instance-id"] = instance_id
    entry["action"] = action
    return entry


def resolve(prefix: str, *, instance_id: int | None = None) -> Doc:
    """A ``[[map-cache]]`` entry resolving ``prefix`` through the Map-Resolvers."""
    return negative(prefix, "send-map-request", instance_id=instance_id)


def site(name: str, key: str, *prefixes: str | Mapping[str, Any]) -> Doc:
    """A ``[[site]]``: its EID-prefixes given as prefixes or whole inline tables."""
    return {
        "name": name,
        "key": key,
        "eid-prefixes": [{"eid-prefix": p} if isinstance(p, str) else dict(p) for p in prefixes],
    }


def map_server(address: str, key: str, **attrs: Any) -> Doc:
    """A ``[[map-server]]`` (``key_id=1`` is ``key-id = 1``)."""
    return {"address": address, "key": key, **{_toml_name(k): v for k, v in attrs.items()}}


def addresses(*addrs: str) -> list[Doc]:
    """``[[map-resolver]]`` or ``[[petr]]`` tables of just an address each."""
    return [{"address": a} for a in addrs]


# -- nodes ----------------------------------------------------------------------------------------


def node(
    name: str | None,
    roles: Sequence[str],
    rlocs: Sequence[str],
    *,
    control_socket: str | None = "",
    **tables: Any,
) -> Doc:
    """Any node: ``[daemon]`` (no ``name`` with None: the host's) and ``[underlay]``."""
    daemon = {"name": name, "roles": list(roles), "control-socket": control_socket}
    doc: Doc = {
        "daemon": {k: v for k, v in daemon.items() if v is not None},
        "underlay": {"rlocs": list(rlocs)},
    }
    return merge(doc, **tables)


def xtr(
    name: str | None = "xtr1",
    rlocs: Sequence[str] = ("192.0.2.1",),
    eids: Sequence[str] = ("198.51.100.0/28",),
    *,
    roles: Sequence[str] = ("itr", "etr"),
    control_socket: str | None = "",
    **tables: Any,
) -> Doc:
    """An xTR: each of ``eids`` a ``[[database-mapping]]`` on the first of ``rlocs``."""
    doc = node(name, roles, rlocs, control_socket=control_socket)
    doc["database-mapping"] = [mapping(eid, rlocs[0]) for eid in eids]
    return merge(doc, **tables)


def msmr(
    name: str | None = "msmr1",
    rlocs: Sequence[str] = ("192.0.2.10",),
    sites: Sequence[Doc] = (site("site-a", "key-site-a", "198.51.100.0/28"),),
    *,
    roles: Sequence[str] = ("map-server", "map-resolver"),
    control_socket: str | None = "",
    **tables: Any,
) -> Doc:
    """A Map-Server and Map-Resolver of ``sites``."""
    doc = node(name, roles, rlocs, control_socket=control_socket)
    doc["site"] = [dict(s) for s in sites]
    return merge(doc, **tables)


def rtr(
    name: str | None = "rtr1",
    rlocs: Sequence[str] = ("192.0.2.20",),
    *,
    roles: Sequence[str] = ("rtr",),
    control_socket: str | None = "",
    **tables: Any,
) -> Doc:
    """An RTR."""
    return node(name, roles, rlocs, control_socket=control_socket, **tables)


def pxtr(
    name: str | None = "pxtr1",
    rlocs: Sequence[str] = ("192.0.2.30",),
    eid_space: Sequence[str] = ("198.51.100.0/24",),
    map_resolvers: Sequence[str] = ("192.0.2.10",),
    *,
    roles: Sequence[str] = ("pitr", "petr"),
    control_socket: str | None = "",
    **tables: Any,
) -> Doc:
    """A PITR + PETR: ``eid_space`` resolved through ``map_resolvers``."""
    doc = node(name, roles, rlocs, control_socket=control_socket)
    doc["map-cache"] = [resolve(prefix) for prefix in eid_space]
    doc["map-resolver"] = addresses(*map_resolvers)
    return merge(doc, **tables)
