"""Command-line entry points: ``lispd`` (daemon and tools)."""
