from pgferry.cli.entry import run

run()
