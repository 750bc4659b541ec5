"""The toy world as a data source: its factors and renderer, probe folders and tasks on disk, its description pool."""
