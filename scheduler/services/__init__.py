"""Use cases shared by the API routers and the loops: submit, cancel, drain, sync, ...

Each use case opens its own short transaction(s) and, once committed, tells the
``Notifier`` what changed (never inside a transaction).
"""
