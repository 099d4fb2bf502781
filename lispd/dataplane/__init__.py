"""The Python reference path: what an ITR or PITR (``itr``), ETR or PETR (``etr``) and RTR
(``rtr``) does with one packet, and the per-packet helpers it is built from (``inner``: inner
header parsing, flow hash, TTL/ECN rules; ``rloc``: RLOC choice; ``icmp``: too-big messages).
Pure: a packet in, an output (send, write to the TUN, drop with a reason) out.  With the
compiled engine (:mod:`lispd.engine`) these run for what it hands back (misses, PITR and PETR
work, traces, drops with reasons); without it, for every packet."""
