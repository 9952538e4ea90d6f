"""A local emulator of the SinoPac QPay Web API and of the bank's callbacks (`python -m sandbox`).

It lets the whole pipeline run, be demonstrated, tested and benchmarked with no bank account and no
internet. It imports only the pure protocol code of `core/`; nothing in `core/` imports it.
"""
