"""The ``corral`` command line: click groups, one module per noun; parse, call the client, render.

Commands talk to the server over HTTP through ``scheduler.client`` only; ``server``,
``db`` and ``demo`` are the exceptions that own a database. The root group is lazy:
a command's module is imported only when that command runs.
"""
