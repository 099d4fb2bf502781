"""Role logic over the fast path: what an ITR, ETR (and later RTR, PITR, PETR) does with one
packet.  Pure: a packet in, an output (send, write to the TUN, drop with a reason) out."""
