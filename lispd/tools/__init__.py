"""Developer tools that are not part of the packet path: capture-file I/O and the like."""
