"""The only room that talks SQL: typed rows, the engine, compare-and-set transitions,
snapshot building and the application of decisions and agent reports."""
