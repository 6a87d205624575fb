"""`tfjob-bench`: the benchmark on a fresh local cluster: a bare client (the limit), our operator
and Kubeflow's training-operator, side by side; table and plot in --out."""

from __future__ import annotations

import argparse
import sys

from tfjob_bench import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfjob-bench", description=__doc__)
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
