"""The only code that touches the operating system: TUN device, UDP sockets, routes, sysctls."""
