"""The production packet engine: TUN -> UDP 4341 and back, in C.

``csrc/`` (built by ``setup.py`` as the optional extension ``lispd.engine._accel``) reads the
TUN and the UDP 4341 sockets itself, in batches, and settles in C every packet its tables
decide: it encapsulates inner packets from the TUN (LPM in its copy of the map-cache, RLOC
chosen by the CRC-32 flow hash, TSO super-packets segmented once and sent in ``sendmmsg``
batches, as UDP GSO bursts only with ``offloads = "gso"``),
decapsulates datagrams for local EIDs to the TUN (TTL/ECN rules, TCP segments merged back) and,
at an RTR, re-encapsulates in place.  ``compiled.py`` (``CompiledPath``) runs engine 0 in the
main process and keeps every engine's tables current from the map-cache and the local
database; ``workers.py`` (the main process's side), ``worker.py`` (one process per further
engine, ``python -m lispd.engine.worker``) and ``workerwire.py`` (their messages) run the
others.

What an engine does not settle it punts, as a plain packet, to the Python reference path
(:mod:`lispd.dataplane`, through the daemon's handlers), which decides and counts it: misses
and negative or ELP entries (resolve, hold, PETR, drop), sources that are not local EIDs
(PITR), DF packets too big for the tunnel (ICMP), LISP-Trace packets, multicast destinations,
data-plane control messages (instance-ID 0xFFFFFF), encrypted, truncated or malformed packets,
non-local destinations at a node that is no RTR (PETR), the first packet of each new ITR (for
SMRs), TTL and ECN drops, and everything while ``punt_all`` is set (behind a NAT).  Both paths
choose RLOCs and send sockets alike, so a flow keeps its path whichever handles it; the tests
run the same vectors through both.

Without the extension (no C compiler at install) this package still imports and the Python
path handles every packet (``[dataplane] fastpath = "auto"``).
"""
