"""A seeded differential explorer for pgferry's CDC.

From one integer seed it generates, in pure Python, a random source schema (`schema`), a
random workload of source transactions (`workload`) and random faults (`faults`); `runner`
then runs `clone --follow` against that source while the workload and the faults happen,
cuts over, and compares the source with the target. A failing seed replays with one
command: `python -m tests.explorer --seed N --plugin P`.
"""
