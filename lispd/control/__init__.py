"""The control plane: sans-IO state machines with an injected clock.

Each machine takes inputs (decoded messages with their raw bytes and source, timer ticks, API
calls) with the current time and returns what to send; the daemon turns that into syscalls.
None of them touches a socket, asyncio or the wall clock.
"""
