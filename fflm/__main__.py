from fflm.cli import run

run()
