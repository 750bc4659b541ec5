"""Helpers for tests and benchmarks: a loopback LLM server, report fixtures and a headless-browser driver.

Not part of the product: no module outside ``tests.support`` imports this package (a test enforces it).
"""
