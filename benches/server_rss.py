"""The resident memory of a server under test, for the benches' Python clients.

    import server_rss; server_rss.kib(pid)

Its own and its children's (fork mode's, one per connection), in KiB, read from /proc: a
bench that read the parent alone would miss what fork mode's children hold. The benches put
this directory on PYTHONPATH.
"""


def kib(server):
    """VmRSS of `server` and its children; a child that exits meanwhile counts for nothing."""
    try:
        with open(f"/proc/{server}/task/{server}/children") as children:
            pids = [server] + [int(child) for child in children.read().split()]
    except OSError:
        pids = [server]
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                total += int(next(l for l in status if l.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            pass
    return total
