"""The ``trl-bots`` command line: ``estimate-pass-rates`` and ``plot``. Training is ``examples/train_bots.py``."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from transformers import HfArgumentParser

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    from .pass_rates import EstimatePassRatesArguments

    parser = argparse.ArgumentParser(
        prog="trl-bots",
        description="Bayesian Online Task Selection (BOTS) for TRL's GRPO trainer. "
        "Train with `accelerate launch examples/train_bots.py`; see the README.",
    )
    parser.add_argument("--version", action="version", version=f"trl-bots {__version__}")
    commands = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=HfArgumentParser
    )
    commands.add_parser(
        "estimate-pass-rates",
        help="Sample k completions per prompt with a model and write their pass rate as a dataset column.",
        description="Write a reference pass-rate column (e.g. for bots_reference_columns): k sampled completions per "
        "prompt, scored with a reward; resumable from OUTPUT_PATH.partial.jsonl.",
        dataclass_types=[EstimatePassRatesArguments],
    )
    plot = commands.add_parser(
        "plot",
        help="Write PNG plots of a BOTS run (effective-task ratio, reward, posterior, implicit estimator, domains).",
    )
    plot.add_argument("run_dir", help="output_dir of a BOTSGRPOTrainer run.")
    plot.add_argument("--output_dir", default=None, help="Where to write the PNGs (default: RUN_DIR/plots).")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
    elif args.command == "estimate-pass-rates":
        from .pass_rates import EstimatePassRatesArguments, estimate_pass_rate_column

        names = {f.name for f in dataclasses.fields(EstimatePassRatesArguments)}
        command_args = EstimatePassRatesArguments(**{k: v for k, v in vars(args).items() if k in names})
        estimate_pass_rate_column(command_args)
        print(f"Wrote {command_args.column} to {command_args.output_path}.")
    elif args.command == "plot":
        from .plotting import plot_run

        for path in plot_run(args.run_dir, args.output_dir):
            print(path)
    return 0


if __name__ == "__main__":  # `python -m trl_bots.cli`, the same as the `trl-bots` command
    sys.exit(main())
