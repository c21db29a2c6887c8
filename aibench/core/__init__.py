"""The lowest layer: errors, JSON and text helpers, deadlines and Ctrl-C, statistics, result checks.

Nothing here imports another aibench layer (tests/test_import_layers.py holds the order).
"""
