"""The offline demonstration's world, outside the package: what `examples/train_bots.py` and the benchmarks train on.

One idea per module:

- :mod:`bots_demo.arithmetic`: additions with an exact number of carries (the difficulty) and a character-level Qwen2.
- :mod:`bots_demo.arguments`: the `demo_*` settings, and where the shipped setup lies (`examples/offline_setup`).
- :mod:`bots_demo.measure`: pass rates of a model on the tasks, the start criterion, held-out accuracy.
- :mod:`bots_demo.warm_start`: supervised training until the start criterion holds, and the two reference models.
- :mod:`bots_demo.offline_setup`: building, shipping (checksummed) and loading the setup folder.
- :mod:`bots_demo.grpo_runs`: one GRPO run of `BOTSGRPOTrainer` (or the stock baseline) from the setup's warm start.
- :mod:`bots_demo.stream`: an unbounded stream of the world's additions, with the pool's difficulty mix.
- :mod:`bots_demo.stock`: `trl.GRPOTrainer` as it ships, logging BOTS's effective-task ratio: the stream's baseline.
- :mod:`bots_demo.console`: one progress bar per phase on the console.

It needs a checkout of the repository: the shipped setup is not part of the installed package. `examples/train_bots.py`
finds this package beside it; the benchmarks and the tests put `examples/` on `sys.path`.
"""
