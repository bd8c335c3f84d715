from pgferry.cli.main import run

run()
