"""Peer-comparison benchmarks, run by ``make bench`` (``python -m benchmarks``).

Each ``benchmarks/bench_<topic>.py`` module exposes ``run() -> list[dict]``:
one dict per table row.  A row may carry a ``"table"`` key naming the table
it belongs to (rows without one go to a table named after the module); every
other key is a column, in insertion order.  Timing helpers live in
:mod:`benchmarks._harness`.  A module whose optional peer library is not
installed fails to import; the runner reports it and carries on.
"""
