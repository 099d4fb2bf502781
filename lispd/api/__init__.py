"""The control socket: JSON over a unix stream socket, one request line, one response line."""
