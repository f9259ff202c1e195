"""Collectors: one module per source (database, Redis, disk, 1C, processes)."""
