"""The demo on the console: one progress bar per phase, no line per logged step."""

from __future__ import annotations

from transformers.trainer_callback import ProgressCallback


class _ProgressBar(ProgressCallback):
    """The Trainer's progress bar without a printed line per log: the logs (some 35 metrics at every GRPO step) are in
    trainer_state.json and the plots, and on the console they would bury the bar and the demo's report."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def bar_without_log_lines(trainer) -> None:
    if trainer.pop_callback(ProgressCallback) is not None:  # absent with disable_tqdm: then the user asked for lines
        trainer.add_callback(_ProgressBar)
