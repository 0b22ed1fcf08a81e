"""The corral node agent: reports its GPUs and attempts to the server and runs what it asks."""
