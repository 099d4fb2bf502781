"""Role logic over the fast path: what an ITR or PITR (``itr``), ETR or PETR (``etr``) and RTR
(``rtr``) does with one packet.  Pure: a packet in, an output (send, write to the TUN, drop with
a reason) out.  With the compiled engine these run for what it hands back (misses, PITR and
PETR work, traces, drops with reasons); without it, for every packet."""
