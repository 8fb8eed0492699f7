"""The op tests: one module per op or op family over a shared harness (harness.py)."""
