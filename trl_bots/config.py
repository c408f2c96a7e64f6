"""BOTSConfig: GRPOConfig plus the settings of Bayesian Online Task Selection."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from trl import GRPOConfig

from .domains import DOMAIN_WEIGHT_MODES
from .success import success_reward_names
from .task_stream import STREAM_ENDS
from .validation import (
    CAP_FITS,
    HYPERPARAMETERS,
    IMPLICIT_ESTIMATORS,
    check_choice,
    check_in_interval,
    check_strategy,
    default_implicit_weight,
    domain_weights_problem,
    is_real,
    missing_evidence,
)


# The implicit evidence a dataset without reference columns gets by default (bots and dots strategies): the embedding
# estimator, which beat explicit evidence alone on fresh seeds (README, "BOTS on a plain dataset").
PLAIN_DATASET_ESTIMATOR = "embedding"
# The default active pool holds this many generation batches of tasks (docs/benchmarks.md, "BOTS on a stream").
POOL_ROUNDS = 64


def _check_json_object(name: str, value) -> None:
    """
    What transformers' `TrainingArguments.__post_init__` parses as JSON (a dict field's text starting with `{`), checked
    first: its `json.loads` fails with a bare `JSONDecodeError` that names neither the field nor the form it wants.
    """
    if not isinstance(value, str) or not value.startswith("{"):
        return
    try:
        json.loads(value)
    except json.JSONDecodeError as error:
        example = '{"math": 1, "logic": 1}' if name == "bots_domain_weights" else '{"name": 1}'
        modes = f"; or {' or '.join(DOMAIN_WEIGHT_MODES)}" if name == "bots_domain_weights" else ""
        raise ValueError(
            f"{name}={value!r} is not valid JSON ({error}). Write a JSON object with quoted names, in single quotes on "
            f"a shell command line: --{name} '{example}'{modes}."
        ) from error


@dataclass
class BOTSConfig(GRPOConfig):
    r"""
    Configuration class for [`trl_bots.BOTSGRPOTrainer`].

    [`BOTSConfig`] inherits every parameter of [`trl.GRPOConfig`] and adds the `bots_*` settings of Bayesian Online
    Task Selection ([BOTS](https://huggingface.co/papers/2510.26374)). Defaults are the paper's. Every field carries a
    help text, so [`trl.TrlParser`] lists it under `--help` and reads it from YAML or the command line.

    Parameters:
        bots_strategy (`str`, *optional*, defaults to `"bots"`):
            Task selection strategy: `"bots"`, `"mopps"` (explicit evidence only), `"dots"` (implicit evidence
            only), `"uniform"` or `"easy2hard"` (non-adaptive baselines).
        bots_target_pass_rate (`float`, *optional*, defaults to `0.5`):
            Target pass rate `p*` in (0, 1): tasks whose pass rate is probably closest to it are selected.
        bots_forgetting (`float`, *optional*, defaults to `0.1`):
            Forgetting rate `lambda` in (0, 1]: how fast old evidence decays toward the prior.
        bots_implicit_weight (`float` or `None`, *optional*, defaults to `None`):
            Weight `rho` in [0, 1] of the implicit evidence; with the embedding estimator its ceiling, scaled every
            round by the estimator's measured accuracy. `None` resolves to the paper's 0.1 with
            `bots_implicit_estimator="reference"`, 0.2 with `"embedding"`, and 0 without implicit evidence.
        bots_thompson (`bool`, *optional*, defaults to `True`):
            Score a Thompson draw from each posterior (`True`) or the posterior mean (`False`).
        bots_temperature (`float`, *optional*, defaults to `0.0`):
            Selection temperature `tau >= 0`; 0 takes the best-scored tasks, > 0 samples from a softmax.
        bots_prior_alpha (`float`, *optional*, defaults to `1.0`):
            `alpha0` of the base prior `Beta(alpha0, beta0)`, in (0, 1e6].
        bots_prior_beta (`float`, *optional*, defaults to `1.0`):
            `beta0` of the base prior `Beta(alpha0, beta0)`, in (0, 1e6].
        bots_pseudo_count (`float` or `None`, *optional*, defaults to `None`):
            Weight `m` in [0, 1e6] of one implicit prediction, in rollouts. `None` resolves to `num_generations`.
        bots_cap_momentum (`float`, *optional*, defaults to `0.9`):
            Momentum `gamma` in [0, 1) of the interpolation coefficient of the implicit-evidence plug-in.
        bots_cap_fit (`str`, *optional*, defaults to `"robust"`):
            How the plug-in fits its interpolation coefficient `mu` on each batch. `"robust"`: the paper's ratio over
            the tasks whose weak and strong reference rates differ, a batch with too little information leaves `mu`
            unchanged, and `mu` stays in [-2, 3]. `"paper"`: the paper's exact formula, a ratio of batch means that
            explodes when a batch's weak and strong means nearly coincide (many tasks with both rates 0 or 1, or two
            similar reference models).
        bots_reference_columns (`list[str]` or `None`, *optional*, defaults to `None`):
            Two dataset columns holding offline pass rates in [0, 1] of a weaker and a stronger reference model
            (in that order). They feed the implicit evidence and the `"easy2hard"` order.
        bots_success_threshold (`float`, *optional*, defaults to `0.5`):
            A completion succeeds when its reward is >= this value.
        bots_success_reward (`str`, `list[str]` or `None`, *optional*, defaults to `None`):
            Reward function(s) that decide success. `None`: GRPO's weighted total of the reward functions with a
            non-zero weight; a completion is scored when at least one of them returned a number (`None`/NaN means
            "this reward does not apply") and its success reward is the weighted sum of the numbers returned. A name,
            or a list of names (e.g. an accuracy reward per domain, each `None` on the others' rows): only these
            decide, summed without weights; a completion none of them scored counts as neither success nor failure,
            whatever a shaping reward (e.g. a format bonus) returned. A single name is stored as a list of one.
        bots_fractional_evidence (`bool`, *optional*, defaults to `False`):
            Count each completion's reward, which must lie in [0, 1], as fractional success instead of thresholding.
        bots_adaptive_implicit_weight (`bool`, *optional*, defaults to `False`):
            Halve `bots_implicit_weight` whenever the plug-in's mean absolute error on a batch is >= 0.25.
        bots_max_unscored_rounds (`int`, *optional*, defaults to `10`):
            Training stops with an error after this many rounds in a row in which no completion was scored (every
            success reward `None`/NaN): the selector would otherwise select from its prior forever. The first such
            round logs a warning.
        bots_seed (`int` or `None`, *optional*, defaults to `None`):
            Seed of the selector's random generator, identical on every process. `None` resolves to `seed`.
        bots_implicit_estimator (`str` or `None`, *optional*, defaults to `None`):
            Where the implicit evidence comes from: `"reference"` (the paper's interpolation between the two
            `bots_reference_columns`) or `"embedding"` (a Bayesian linear model from each prompt's embedding to its
            pass rate, learned from the run's own rollouts; uses the reference columns as two more features when
            they are set). `None` resolves to `"reference"` when `bots_reference_columns` is set, otherwise to
            `"embedding"` for `bots_strategy` `"bots"` and `"dots"` and to no implicit evidence for the others.
            `"none"` turns implicit evidence off.
        bots_embedding_column (`str` or `None`, *optional*, defaults to `None`):
            With the embedding estimator: a dataset column holding one precomputed vector per task, instead of the
            policy model's own hidden states.
        bots_embedding_model (`str` or `None`, *optional*, defaults to `None`):
            With the embedding estimator: a `transformers` model (name or path) whose mean-pooled middle-layer hidden
            states embed the prompts, instead of the policy model's.
        bots_embedding_dim (`int`, *optional*, defaults to `64`):
            Dimensions kept of the prompt embeddings (PCA of the standardised vectors), stored as float16.
        bots_domain_column (`str` or `None`, *optional*, defaults to `None`):
            Dataset column naming each task's domain (GURU: `ability` or `data_source`; nested fields with dots, e.g.
            `extra_info.domain`). Every round then logs per domain its share of the selected tasks, effective-task
            ratio and mean posterior pass rate (`bots/domain/<name>/...`), and the completions table gets the domain.
        bots_domain_weights (`dict[str, float]`, `str` or `None`, *optional*, defaults to `None`):
            With `bots_domain_column`: the share of every generation batch each domain gets, as a mapping domain ->
            weight (JSON on the command line), `"proportional"` (to the domain's number of tasks) or `"uniform"`.
            Every round takes each domain's quota and selects within the domain by the BOTS rule. `None` (`"none"` on
            the command line, to override a recipe): one selection over all tasks.
        bots_pool_size (`int` or `None`, *optional*, defaults to `None`):
            Tasks kept in memory when the tasks come as a stream (an active pool): every round selects among them,
            and the tasks that no longer pay are replaced by the stream's next ones. `None`: 64 generation batches of
            tasks (64 x `generation_batch_size // num_generations`) when `train_dataset` is a `datasets.IterableDataset`;
            no pool with a map-style dataset (every row is a task). Set it with a map-style dataset to read its rows in
            order as a stream (for datasets too large to hold a belief about every row).
        bots_retire_threshold (`float`, *optional*, defaults to `0.75`):
            Active pool: after every round, a task is retired when the probability under its posterior that its next
            group of `num_generations` completions has mixed outcomes (the groups GRPO learns from) is below this
            share, in [0, 1), of that probability for a task nothing is known about (under the base prior); 0 never
            retires. The baselines `uniform` and `easy2hard` retire every task once it is served.
        bots_max_visits (`int` or `None`, *optional*, defaults to `2`):
            Active pool: a task is also retired once it has been served this many rounds, whatever its posterior
            (`None`: no budget). A stream has new tasks to give: a task trained on again and again is learned by heart
            rather than generalised from.
        bots_stream_end (`str`, *optional*, defaults to `"restart"`):
            Active pool, when the stream runs out: `"restart"` reads it again (another pass, reshuffled by
            `set_epoch` if the dataset shuffles), as the Trainer does with `max_steps`; `"stop"` ends training at the
            first round whose retired tasks cannot be replaced.
    """

    # Accepted as a JSON string on the command line, like GRPOConfig's other dict fields.
    _VALID_DICT_FIELDS = [*GRPOConfig._VALID_DICT_FIELDS, "bots_domain_weights"]

    bots_strategy: str = field(
        default="bots",
        metadata={
            "help": "Task selection strategy.",
            "choices": ["bots", "mopps", "dots", "uniform", "easy2hard"],
        },
    )
    bots_target_pass_rate: float = field(
        default=0.5,
        metadata={"help": "Target pass rate p* in (0, 1): tasks whose pass rate is probably closest are selected."},
    )
    bots_forgetting: float = field(
        default=0.1,
        metadata={"help": "Forgetting rate lambda in (0, 1]: how fast old evidence decays toward the prior."},
    )
    bots_implicit_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight rho in [0, 1] of the implicit evidence (with the embedding estimator: its ceiling, scaled "
            "every round by the estimator's measured accuracy). None: 0.1 (the paper's value) with reference columns, "
            "0.2 with the embedding estimator, 0 without implicit evidence."
        },
    )
    bots_thompson: bool = field(
        default=True,
        metadata={"help": "Score a Thompson draw from each posterior (True) or the posterior mean (False)."},
    )
    bots_temperature: float = field(
        default=0.0,
        metadata={"help": "Selection temperature tau >= 0: 0 takes the best-scored tasks, > 0 samples a softmax."},
    )
    bots_prior_alpha: float = field(
        default=1.0,
        metadata={"help": "alpha0 of the base prior Beta(alpha0, beta0), in (0, 1e6]."},
    )
    bots_prior_beta: float = field(
        default=1.0,
        metadata={"help": "beta0 of the base prior Beta(alpha0, beta0), in (0, 1e6]."},
    )
    bots_pseudo_count: float | None = field(
        default=None,
        metadata={"help": "Weight m in [0, 1e6] of one implicit prediction, in rollouts. None uses num_generations."},
    )
    bots_cap_momentum: float = field(
        default=0.9,
        metadata={"help": "Momentum gamma in [0, 1) of the implicit-evidence plug-in's interpolation coefficient."},
    )
    bots_cap_fit: str = field(
        default="robust",
        metadata={
            "help": "How the implicit-evidence plug-in fits its coefficient mu on each batch: 'robust' (the paper's "
            "ratio over tasks whose reference rates differ, uninformative batches skipped, mu kept in [-2, 3]) or "
            "'paper' (the paper's exact ratio of batch means, which explodes when the weak and strong means nearly "
            "coincide).",
            "choices": ["robust", "paper"],
        },
    )
    bots_reference_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Two dataset columns with offline pass rates in [0, 1] of a weaker and a stronger reference model, "
            "in that order. They feed the implicit evidence and the easy2hard order. 'none' on the command line drops "
            "a recipe's columns."
        },
    )
    bots_success_threshold: float = field(
        default=0.5,
        metadata={"help": "A completion succeeds when its reward is >= this value."},
    )
    # `list[str]` for the parser (`--bots_success_reward a b`); a single name (Python, YAML) is accepted too.
    bots_success_reward: list[str] | None = field(
        default=None,
        metadata={
            "help": "Reward function(s) that decide success. None: GRPO's weighted total of the reward functions "
            "with a non-zero weight, a completion being scored when at least one of them returned a number. One or "
            "more names: only these decide (summed, unweighted); a completion none of them scored is neither a "
            "success nor a failure."
        },
    )
    bots_fractional_evidence: bool = field(
        default=False,
        metadata={
            "help": "Count each completion's reward, which must lie in [0, 1], as fractional success instead of "
            "comparing it with bots_success_threshold."
        },
    )
    bots_adaptive_implicit_weight: bool = field(
        default=False,
        metadata={"help": "Halve bots_implicit_weight whenever the plug-in's mean absolute error on a batch >= 0.25."},
    )
    bots_max_unscored_rounds: int = field(
        default=10,
        metadata={
            "help": "Stop with an error after this many rounds in a row without a scored completion (every success "
            "reward None/NaN); the first such round logs a warning."
        },
    )
    bots_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the selector's random generator, the same on every process. None uses seed."},
    )

    bots_implicit_estimator: str | None = field(
        default=None,
        metadata={
            "help": "Source of the implicit evidence: 'reference' (interpolation between bots_reference_columns) or "
            "'embedding' (a Bayesian linear model from prompt embeddings to pass rates, learned online from the run's "
            "rollouts). None: 'reference' with reference columns, else 'embedding' for the bots and dots strategies. "
            "'none': no implicit evidence.",
            "choices": [*IMPLICIT_ESTIMATORS, "none"],
        },
    )
    bots_embedding_column: str | None = field(
        default=None,
        metadata={"help": "Embedding estimator: a dataset column of precomputed vectors, one per task."},
    )
    bots_embedding_model: str | None = field(
        default=None,
        metadata={
            "help": "Embedding estimator: a transformers model (name or path) that embeds the prompts instead of the "
            "policy model."
        },
    )
    bots_embedding_dim: int = field(
        default=64,
        metadata={"help": "Embedding estimator: dimensions kept of the prompt embeddings (PCA), stored as float16."},
    )
    bots_domain_column: str | None = field(
        default=None,
        metadata={
            "help": "Dataset column naming each task's domain (nested fields with dots, e.g. extra_info.domain): "
            "per-domain metrics every round, and the domain in the completions table."
        },
    )
    bots_domain_weights: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "Share of every generation batch per domain (needs bots_domain_column): a mapping domain -> "
            "weight (JSON on the command line), 'proportional' (to the domain sizes) or 'uniform'. Each domain's "
            "quota is selected inside the domain by the BOTS rule. None ('none' on the command line): one selection "
            "over all tasks."
        },
    )

    bots_pool_size: int | None = field(
        default=None,
        metadata={
            "help": "Active pool: tasks kept in memory when the tasks come as a stream; retired tasks are replaced by "
            "the stream's next ones. None: 64 x tasks per round with an IterableDataset, no pool with a map-style "
            "dataset (set it to read a map-style dataset as a stream)."
        },
    )
    bots_retire_threshold: float = field(
        default=0.75,
        metadata={
            "help": "Active pool: retire a task when its posterior probability that the next group of completions "
            "has mixed outcomes (what GRPO learns from) is below this share, in [0, 1), of that probability for a "
            "task nothing is known about. 0 never retires."
        },
    )
    bots_max_visits: int | None = field(
        default=2,
        metadata={
            "help": "Active pool: retire a task once it has been served this many rounds, whatever its posterior "
            "(None: no budget)."
        },
    )
    bots_stream_end: str = field(
        default="restart",
        metadata={
            "help": "Active pool, when the stream runs out: 'restart' (another pass) or 'stop' (training ends when "
            "retired tasks cannot be replaced).",
            "choices": list(STREAM_ENDS),
        },
    )

    def __post_init__(self):
        for name in self._VALID_DICT_FIELDS:
            _check_json_object(name, getattr(self, name))
        super().__post_init__()
        check_strategy("bots_strategy", self.bots_strategy)
        check_choice("bots_cap_fit", self.bots_cap_fit, CAP_FITS)
        if self.bots_reference_columns in (["none"], "none"):
            self.bots_reference_columns = None  # the command line's way to drop a recipe's reference columns
        if self.bots_reference_columns is not None:
            columns = self.bots_reference_columns
            if isinstance(columns, str) or len(columns) != 2 or not all(isinstance(c, str) and c for c in columns):
                raise ValueError(
                    f"bots_reference_columns must name two dataset columns (weak, strong), got {columns!r}. "
                    "Example: bots_reference_columns=['qwen2.5_7b_pass_rate', 'qwen3_30b_pass_rate']."
                )
            self.bots_reference_columns = list(columns)
        # Derived defaults, resolved here like GRPOConfig's own (e.g. generation_batch_size).
        self._resolve_implicit_estimator()
        if self.bots_implicit_weight is None:
            self.bots_implicit_weight = default_implicit_weight(self.bots_implicit_estimator)
        if self.bots_pseudo_count is None:
            self.bots_pseudo_count = self.num_generations  # m: one prediction weighs as much as one task's rollouts
        if self.bots_seed is None:
            self.bots_seed = self.seed
        for parameter in HYPERPARAMETERS:
            parameter.check(parameter.config_value(self), parameter.field_label)
        self.bots_success_reward = success_reward_names(self.bots_success_reward)
        check_in_interval("bots_success_threshold", self.bots_success_threshold, -math.inf, math.inf, high_open=True)
        rounds = self.bots_max_unscored_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"bots_max_unscored_rounds must be a positive integer, got {rounds!r}.")
        # NumPy scalars pass the checks; plain floats keep the config JSON-serialisable (it is saved with checkpoints).
        for name in (*(name for parameter in HYPERPARAMETERS for name in parameter.fields), "bots_success_threshold"):
            setattr(self, name, float(getattr(self, name)))
        has_reference = self.bots_reference_columns is not None
        has_estimator = self.bots_implicit_estimator == "embedding"
        missing = missing_evidence(self.bots_strategy, self.bots_implicit_weight, has_reference, has_estimator)
        if missing is not None and self.bots_strategy == "bots":
            raise ValueError(
                f"bots_implicit_weight={self.bots_implicit_weight} needs implicit evidence, but "
                "bots_implicit_estimator='none'. Set bots_implicit_estimator='embedding' (or bots_reference_columns="
                "[weak_column, strong_column], two dataset columns of offline pass rates), or bots_implicit_weight=0 "
                "for explicit evidence only."
            )
        if missing is not None:  # dots or easy2hard
            raise ValueError(
                f"bots_strategy={self.bots_strategy!r} needs reference pass rates, but bots_reference_columns is not "
                "set. Set bots_reference_columns=[weak_column, strong_column] or choose another bots_strategy."
            )
        self._check_domain_settings()
        self._check_pool_settings()

    def _resolve_implicit_estimator(self) -> None:
        """``bots_implicit_estimator``: checked against the strategy and the reference columns, ``None`` resolved
        (``"none"`` becomes ``None``), and the embedding settings refused where nothing would read them."""
        estimator, has_reference = self.bots_implicit_estimator, self.bots_reference_columns is not None
        if estimator is not None and estimator not in (*IMPLICIT_ESTIMATORS, "none"):
            raise ValueError(f"bots_implicit_estimator must be 'reference', 'embedding' or 'none', got {estimator!r}.")
        if estimator == "reference" and not has_reference:
            raise ValueError(
                "bots_implicit_estimator='reference' interpolates between two reference models' pass rates, but "
                "bots_reference_columns is not set. Set it, or use bots_implicit_estimator='embedding', which needs "
                "no reference columns."
            )
        if estimator is not None and estimator != "none" and self.bots_strategy == "mopps":
            raise ValueError(
                f"bots_strategy='mopps' uses explicit evidence only, but bots_implicit_estimator={estimator!r}. Use "
                "bots_strategy='bots' for explicit and implicit evidence, or leave bots_implicit_estimator unset."
            )
        if estimator is None:
            if has_reference:
                estimator = "reference"
            elif self.bots_strategy in ("bots", "dots") and self.bots_implicit_weight != 0:
                estimator = PLAIN_DATASET_ESTIMATOR  # (rho = 0 asks for explicit evidence only: nothing to embed)
        self.bots_implicit_estimator = None if estimator == "none" else estimator
        embedding = {
            "bots_embedding_column": self.bots_embedding_column,
            "bots_embedding_model": self.bots_embedding_model,
        }
        given = {name: value for name, value in embedding.items() if value is not None}
        if given and self.bots_implicit_estimator != "embedding":
            raise ValueError(
                f"{', '.join(f'{name}={value!r}' for name, value in given.items())} set, but the embedding estimator is "
                f"off (bots_implicit_estimator={self.bots_implicit_estimator!r}). Set bots_implicit_estimator="
                "'embedding', or remove these settings."
            )
        if len(given) == 2:
            raise ValueError(
                "bots_embedding_column and bots_embedding_model are both set: the embeddings come from one of them. "
                "Keep the column (precomputed vectors) or the model (computed at start)."
            )
        for name, value in given.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
        dim = self.bots_embedding_dim
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"bots_embedding_dim must be a positive integer, got {dim!r}.")

    def _check_pool_settings(self) -> None:
        size = self.bots_pool_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < self.tasks_per_round):
            raise ValueError(
                f"bots_pool_size must be an integer of at least the tasks of one generation batch "
                f"({self.tasks_per_round} = generation_batch_size // num_generations), got {size!r}. The default "
                f"(None) keeps 64 batches of tasks for a stream."
            )
        visits = self.bots_max_visits
        if visits is not None and (isinstance(visits, bool) or not isinstance(visits, int) or visits < 1):
            raise ValueError(f"bots_max_visits must be a positive integer or None (no budget), got {visits!r}.")
        check_in_interval("bots_retire_threshold", self.bots_retire_threshold, 0.0, 1.0, high_open=True)
        self.bots_retire_threshold = float(self.bots_retire_threshold)
        check_choice("bots_stream_end", self.bots_stream_end, STREAM_ENDS)

    @property
    def pool_size(self) -> int:
        """The active pool's size: `bots_pool_size`, or 64 generation batches of tasks when it is `None`."""
        return self.bots_pool_size if self.bots_pool_size is not None else POOL_ROUNDS * self.tasks_per_round

    @property
    def tasks_per_round(self) -> int:
        """B, the distinct tasks of one generation batch: `generation_batch_size // num_generations`."""
        return self.generation_batch_size // self.num_generations

    def _check_domain_settings(self) -> None:
        """What can be checked without the data; the domains themselves are checked when the trainer reads them."""
        if isinstance(self.bots_domain_weights, str) and self.bots_domain_weights.lower() == "none":
            self.bots_domain_weights = None  # the command line's way to unset a recipe's weights
        if isinstance(self.bots_domain_weights, Mapping):  # NumPy weights as plain floats, like the other settings
            self.bots_domain_weights = {
                domain: float(value) if is_real(value) else value for domain, value in self.bots_domain_weights.items()
            }
        column, weights = self.bots_domain_column, self.bots_domain_weights
        if column is not None and (not isinstance(column, str) or not column):
            raise ValueError(f"bots_domain_column must name a dataset column, got {column!r}.")
        problem = domain_weights_problem(self.bots_strategy, column is not None, weights)
        if problem == "no domains":
            raise ValueError(
                f"bots_domain_weights={weights!r} needs bots_domain_column, the dataset column naming each task's "
                "domain (e.g. 'ability' for GURU). Set it, or leave bots_domain_weights out for one global selection."
            )
        if isinstance(weights, str) and weights not in DOMAIN_WEIGHT_MODES:
            raise ValueError(
                f"bots_domain_weights must be a mapping domain -> weight (JSON on the command line, e.g. "
                f"'{{\"math\": 2, \"logic\": 1}}'), 'proportional' or 'uniform', got {weights!r}."
            )
        if problem == "fixed order":
            raise ValueError(
                f"bots_domain_weights applies to the adaptive strategies (bots, mopps, dots); bots_strategy="
                f"{self.bots_strategy!r} serves a fixed order of all tasks. Leave bots_domain_weights out for this "
                "baseline (bots_domain_column alone still logs per-domain metrics)."
            )
