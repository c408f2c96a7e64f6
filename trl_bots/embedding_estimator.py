"""Implicit evidence without reference columns: a Bayesian linear model from prompt embeddings to pass rates.

:class:`EmbeddingEstimator` learns, online and from the run's own rollouts, how a task's embedding maps to its current
pass rate, and predicts that rate for every task: the role the reference columns play for the interpolation plug-in.
It is an :class:`~trl_bots.implicit.ImplicitEvidence` plug-in whose state is arrays (saved in the selector file).
docs/algorithm.md (Embedding evidence) gives the measurements behind each choice.

**Features.** ``x_i = (e_i - mean) / s``: the embedding of task i centred over all tasks and divided by one scale
``s``, the root mean variance of its columns (PCA components keep their relative variances, so the isotropic prior
shrinks the minor ones most), optionally followed by the task's two reference pass rates, each standardised. A
constant 1 is prepended for the intercept: ``x_i`` has ``D = d + 1`` entries (``d + 3`` with reference rates).

**Labels.** Each task of a round gives the empirical logit of its ``s`` successes in ``n`` trials and a weight
proportional to its trials::

    y_j = logit((s_j + 1/2) / (n_j + 1)),      w_j = n_j / 4

Labels decay by ``decay`` per round (the policy moves, so old rates go stale). The estimator keeps the decayed
sufficient statistics, which cost O(D^2) whatever the number of tasks::

    G <- decay G + sum_j w_j x_j x_j^T,    h <- decay h + sum_j w_j x_j y_j,
    c <- decay c + sum_j w_j y_j^2,        r <- decay r + (number of labels)

**Fit.** Bayesian linear regression ``y_j ~ N(x_j . theta, 1 / (beta w_j))`` with a Gaussian prior of precision
``alpha`` on the slopes (the intercept is free): on the statistics centred by their weighted means,
``theta = (G_c + (alpha / beta) I)^-1 h_c``. ``alpha`` and ``beta`` maximise the marginal likelihood (MacKay's fixed
point, in the eigenbasis of ``G_c = V diag(l) V^T``)::

    gamma = sum_k beta l_k / (beta l_k + alpha),   alpha <- gamma / |theta|^2,
    beta  <- (r - 1 - gamma) / (c_c - 2 theta . h_c + theta^T G_c theta)

so the regularisation follows the evidence: strong while there are few labels, weak once there are many
(``ridge=<number>`` fixes ``alpha / beta`` instead, for ablations).

**Prediction.** ``q_i = sigmoid(x_i . theta)``, cached as float32 for every task. Each fit recomputes the next
``refresh_rows`` tasks of the cache (all of them when ``N <= refresh_rows``) in a cycle, so a round costs the same
whatever N and a prediction is at most ``ceil(N / refresh_rows) - 1`` fits old. :meth:`predict` returns the cache:
exactly the values the posterior is fed.

**Accuracy.** Before each fit, the cached predictions of the round's tasks (made before their rewards were seen) are
scored against the observed rates; decayed sums give an honest running correlation of the predictions with the true
rates, the binomial noise of the observed rates removed (:attr:`correlation`). :meth:`implicit_weight_scale` is its
positive part: the selector multiplies ``rho`` by it, so useless embeddings fall back to explicit evidence alone.

**Replaced tasks.** In an active pool a row's task is retired and another takes its row (:meth:`replace`). The
newcomer's features go through the standardisations fitted on the first tasks (the scale ``theta`` was learned on) and
its prediction is computed at once with the current fit; the statistics stay, being sums over labelled rounds. With
``replaceable=True`` the features and those standardisations are state, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .validation import check_reference_pass_rates, check_task_ids


JEFFREYS = 0.5  # pseudo successes and failures of the empirical logit
EVIDENCE_ITERATIONS = 100
REFRESH_ROWS = 1 << 16  # rows of the prediction cache recomputed per fit: 65,536 x D multiply-adds
ALPHA_BOUNDS = (1e-6, 1e6)  # the evidence fixed point stays in here (no labels / perfectly fitting labels)
LOGIT_BOUND = 30.0  # predictions stay within sigmoid(+-30), about 1e-13 from 0 and 1
# The honest error needs tasks with at least two trials (the unbiased binomial variance divides by n - 1).
MIN_TRIALS_FOR_ERROR = 2
ERROR_TERMS = 7  # decayed sums of q, o, q^2, o^2, q o, o (1 - o) / (n - 1) and the count
STATE_ARRAYS = ("gram", "moment", "theta", "cache", "error_sums")


def empirical_logits(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Labels ``y = logit((s + a) / (n + 2a))``, ``a`` = :data:`JEFFREYS`: finite for 0 and n successes."""
    p = (successes + JEFFREYS) / (trials + 2 * JEFFREYS)
    return np.log(p / (1.0 - p))


class Standardisation(NamedTuple):
    """A per-column affine map fitted on one set of vectors, kept to put later vectors on the same scale:
    ``(x - mean) * scale`` for each column, the columns of ``scale == 0`` (constant when fitted) dropped."""

    mean: np.ndarray  # float64 [columns]
    scale: np.ndarray  # float64 [columns], 0 for a dropped column

    @classmethod
    def fit(cls, columns: np.ndarray, per_column: bool = True, chunk: int = 1 << 16) -> Standardisation:
        """Each column's mean, and each column's inverse standard deviation (``per_column``; the constant columns
        dropped) or one inverse scale for all, that of the root mean variance. Mean and variance are accumulated in
        float64 chunk by chunk (shifted by the first row, which keeps the sums exact enough): no float64 copy of the
        array is made."""
        columns = np.asarray(columns)
        shift = columns[0].astype(np.float64)
        total, squares = np.zeros(columns.shape[1]), np.zeros(columns.shape[1])
        for start in range(0, columns.shape[0], chunk):
            part = columns[start : start + chunk].astype(np.float64) - shift
            total += part.sum(axis=0)
            squares += np.einsum("ij,ij->j", part, part)
        mean_shifted = total / columns.shape[0]
        variance = np.maximum(squares / columns.shape[0] - mean_shifted**2, 0.0)
        mean = shift + mean_shifted
        if per_column:
            keep = np.sqrt(variance) > 1e-6 * np.maximum(np.abs(mean), 1.0)
            scale = np.zeros(columns.shape[1])
            scale[keep] = 1.0 / np.sqrt(variance[keep])
        else:
            scale = np.full(columns.shape[1], 1.0 / math.sqrt(max(float(variance.mean()), 1e-300)))
        return cls(mean, scale)

    def apply(self, columns: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
        """``columns`` ``[n, columns]`` standardised, as float32 ``[n, kept columns]``; each row on its own, so a row
        gets the same values whatever the rows beside it."""
        columns = np.asarray(columns)
        keep = self.scale != 0
        mean, scale = self.mean[keep], self.scale[keep]
        out = np.empty((columns.shape[0], int(keep.sum())), dtype=np.float32)
        for start in range(0, columns.shape[0], chunk):
            out[start : start + chunk] = (columns[start : start + chunk, keep].astype(np.float64) - mean) * scale
        return out


def standardise(columns: np.ndarray, per_column: bool = True, chunk: int = 1 << 16) -> np.ndarray:
    """Centred columns as float32, divided by each column's standard deviation (``per_column``; the constant columns
    dropped) or by one scale for all, the root mean variance (:class:`Standardisation` fitted on ``columns``)."""
    return Standardisation.fit(columns, per_column, chunk).apply(columns, chunk)


def sigmoid_predictions(features: np.ndarray, theta: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sigmoid(theta[0] + features . theta[1:])`` in float32, the logits clipped to +-:data:`LOGIT_BOUND` (exp stays
    finite), into ``out`` when given (no temporary beside the logits)."""
    logits = features @ theta[1:].astype(np.float32)
    logits += np.float32(theta[0])
    np.clip(logits, -LOGIT_BOUND, LOGIT_BOUND, out=logits)
    np.negative(logits, out=logits)
    np.exp(logits, out=logits)
    logits += 1.0
    return np.reciprocal(logits, out=out)


def centred_statistics(gram: np.ndarray, moment: np.ndarray, square: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The slope part of the statistics, centred by the weighted means (column 0 of ``gram`` is the constant)."""
    total = gram[0, 0]
    mean_x, mean_y = gram[0, 1:] / total, moment[0] / total
    g = gram[1:, 1:] - total * np.outer(mean_x, mean_x)
    h = moment[1:] - total * mean_x * mean_y
    return g, h, square - total * mean_y * mean_y


def evidence_fit(
    g: np.ndarray, h: np.ndarray, c: float, rows: float, alpha: float, beta: float
) -> tuple[np.ndarray, float, float]:
    """Slopes and the hyper-parameters ``(alpha, beta)`` that maximise the evidence (MacKay's fixed point, started
    from the given ones); see the module docstring."""
    values, vectors = np.linalg.eigh(g)
    values = np.clip(values, 0.0, None)
    projected = vectors.T @ h
    for _ in range(EVIDENCE_ITERATIONS):
        shrink = beta / (beta * values + alpha)
        theta = shrink * projected
        gamma = float(np.sum(values * shrink))
        misfit = c - 2.0 * float(theta @ projected) + float(np.sum(values * theta * theta))
        new_alpha = min(max(gamma / max(float(theta @ theta), 1e-300), ALPHA_BOUNDS[0]), ALPHA_BOUNDS[1])
        new_beta = max(rows - 1.0 - gamma, 1.0) / max(misfit, 1e-12)
        done = abs(new_alpha - alpha) <= 1e-6 * alpha and abs(new_beta - beta) <= 1e-6 * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    theta = vectors @ (beta / (beta * values + alpha) * projected)
    return theta, alpha, beta


def check_embeddings(
    embeddings: Any,
    num_tasks: int | None = None,
    name: str = "embeddings",
    dim: int | None = None,
    task_ids: np.ndarray | None = None,
) -> np.ndarray:
    """``embeddings`` as a 2-D float array of finite values, one non-constant row per task; otherwise a
    ``ValueError`` naming the first bad rows.

    ``dim`` given: the rows are new tasks joining a set of ``dim``-dimensional embeddings, so they must have ``dim``
    columns, and one row is enough (no need to tell them apart from each other). ``task_ids``: the id of each row in
    the messages (default: the row numbers)."""
    array = np.asarray(embeddings)
    if array.dtype == object or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"{name} must be a [tasks, dimensions] array of numbers with rows of one length, got "
            f"{'shape ' + str(array.shape) if array.dtype != object else 'rows of different lengths'}."
        )
    if num_tasks is not None and array.shape[0] != num_tasks:
        raise ValueError(f"{name} has {array.shape[0]} rows but there are {num_tasks} tasks: give one row per task.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"{name} of the new tasks have {array.shape[1]} dimensions, the other tasks' {dim}: embed them as the "
            "first ones (the same model, layer and dimension reduction)."
        )
    if dim is None and (array.shape[0] < 2 or array.shape[1] < 1):
        raise ValueError(f"{name} must hold at least 2 tasks and 1 dimension, got shape {array.shape}.")
    ids = np.arange(array.shape[0]) if task_ids is None else np.asarray(task_ids)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{name} of tasks {ids[bad[:10]].tolist()} hold NaN or infinite values; every value must be a finite "
            "number."
        )
    zero = np.flatnonzero(~array.any(axis=1))
    if zero.size:
        raise ValueError(
            f"{name} of tasks {ids[zero[:10]].tolist()} are all zeros, which no encoder produces for a real prompt (an "
            "empty or failed row?). Recompute them, or drop those tasks."
        )
    if dim is None and not (array != array[0]).any():
        raise ValueError(f"{name} are the same vector for every task: they cannot tell tasks apart.")
    return array


class EmbeddingEstimator:
    """Bayesian linear regression of the empirical logit pass rate on prompt embeddings (module docstring).

    Args:
        embeddings: ``[N, d]`` array, one vector per task (any float dtype), finite; see :func:`check_embeddings`.
        reference_pass_rates: optional ``[N, 2]`` reference pass rates (weak, strong), two more features.
        decay: weight kept per round by the older labels, in (0, 1].
        ridge: ``"evidence"`` (``alpha`` and ``beta`` by the evidence) or a number ``alpha / beta >= 0``.
        refresh_rows: tasks whose cached prediction each fit recomputes (in a cycle over all tasks).
        accuracy_decay: weight kept per round by the older terms of the honest accuracy, in (0, 1].
        follow_accuracy: scale the selector's ``rho`` by the honest correlation (:meth:`implicit_weight_scale`);
            ``False`` keeps ``rho`` fixed.
        num_tasks: the number of rows ``embeddings`` must have (``None``: any).
        replaceable: rows may later hold other tasks (:meth:`replace`, an active pool's slots): the features and the
            standardisations that put newcomers on the first tasks' scale become state, so that a resumed run
            continues bit-identically. Off by default, so that a fixed set of a million tasks does not write its
            features (derived from the arguments) into every checkpoint.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        reference_pass_rates: np.ndarray | None = None,
        decay: float = 0.97,
        ridge: float | str = "evidence",
        refresh_rows: int = REFRESH_ROWS,
        accuracy_decay: float = 0.9,
        follow_accuracy: bool = True,
        num_tasks: int | None = None,
        replaceable: bool = False,
    ) -> None:
        embeddings = check_embeddings(embeddings, num_tasks)
        for name, value in (("decay", decay), ("accuracy_decay", accuracy_decay)):
            if not (isinstance(value, (int, float)) and 0 < value <= 1):
                raise ValueError(f"{name} must be a number in (0, 1], got {value!r}.")
        if not (ridge == "evidence" or (isinstance(ridge, (int, float)) and ridge >= 0)):
            raise ValueError(f"ridge must be 'evidence' or a number >= 0, got {ridge!r}.")
        if isinstance(refresh_rows, bool) or not isinstance(refresh_rows, int) or refresh_rows < 1:
            raise ValueError(f"refresh_rows must be a positive integer, got {refresh_rows!r}.")
        # Kept (and state when replaceable): a newcomer's features use the transformation fitted on the first tasks.
        self.embedding_standardisation = Standardisation.fit(embeddings, per_column=False)
        self.reference_standardisation: Standardisation | None = None
        features = self.embedding_standardisation.apply(embeddings)
        if reference_pass_rates is not None:
            references = np.asarray(reference_pass_rates, dtype=np.float32).reshape(embeddings.shape[0], -1)
            self.reference_standardisation = Standardisation.fit(references)
            features = np.concatenate([features, self.reference_standardisation.apply(references)], axis=1)
        self.replaceable = bool(replaceable)
        # [N, D - 1] float32; derived from the arguments, so state only when replace() can change it.
        self.features = np.ascontiguousarray(features)
        self.num_tasks, self.dim = features.shape[0], features.shape[1] + 1
        self.decay, self.ridge, self.accuracy_decay = float(decay), ridge, float(accuracy_decay)
        self.refresh_rows, self.follow_accuracy = refresh_rows, bool(follow_accuracy)
        self.gram = np.zeros((self.dim, self.dim))
        self.moment = np.zeros(self.dim)
        self.square = 0.0  # decayed sum of w y^2
        self.rows = 0.0  # decayed number of labels
        self.theta = np.zeros(self.dim)  # intercept, slopes
        self.alpha, self.beta = 1.0, 1.0
        self.cache = np.full(self.num_tasks, 0.5, dtype=np.float32)
        self.cursor = 0  # next row of the cache to refresh
        self.error_sums = np.zeros(ERROR_TERMS)

    # ------------------------------------------------------------------ ImplicitEvidence
    def fit(self, indices: np.ndarray, observed_rates: np.ndarray, trials: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        rates = np.asarray(observed_rates, dtype=np.float64)
        trials = np.asarray(trials, dtype=np.float64)
        self._score(indices, rates, trials)
        labels, weights = empirical_logits(rates * trials, trials), trials / 4.0
        x = np.empty((indices.size, self.dim))
        x[:, 0] = 1.0
        x[:, 1:] = self.features[indices]
        wx = x * weights[:, None]
        self.gram = self.decay * self.gram + wx.T @ x
        self.moment = self.decay * self.moment + wx.T @ labels
        self.square = self.decay * self.square + float(weights @ (labels * labels))
        self.rows = self.decay * self.rows + indices.size
        self._solve()
        self._refresh()

    def predict(self, indices: np.ndarray | None = None) -> np.ndarray:
        return self.cache if indices is None else self.cache[indices]

    def replace(
        self, indices: np.ndarray, embeddings: np.ndarray, reference_pass_rates: np.ndarray | None = None
    ) -> None:
        """Rows ``indices`` (distinct) now hold other tasks, of ``embeddings`` ``[k, d]`` (and ``reference_pass_rates``
        ``[k, 2]``, required exactly when the estimator was built with them).

        Their features are standardised by the transformations fitted on the first tasks (newcomers on the scale the
        fit ``theta`` was learned on), and their cached predictions recomputed at once with the current fit, so that
        :meth:`predict` gives each newcomer an informed prediction (0.5 before any fit). The decayed statistics and
        the honest-accuracy sums stay: they are sums over labelled rounds, not per task. Needs ``replaceable=True``.
        """
        if not self.replaceable:
            raise ValueError(
                "replace() needs an EmbeddingEstimator built with replaceable=True: its features then become state, "
                "so that a resumed run holds the replaced tasks' features, not the first ones."
            )
        indices = check_task_ids("indices", indices, self.num_tasks)
        unique, counts = np.unique(indices, return_counts=True)
        if indices.ndim != 1 or unique.size != indices.size:
            raise ValueError(
                f"indices must be a 1-D array of distinct task ids, got shape {indices.shape} with repeated "
                f"{unique[counts > 1][:5].tolist()}."
            )
        embeddings = check_embeddings(
            embeddings, indices.size, dim=self.embedding_standardisation.mean.size, task_ids=indices
        )
        features = self.embedding_standardisation.apply(embeddings)
        if (reference_pass_rates is None) != (self.reference_standardisation is None):
            raise ValueError(
                "reference_pass_rates must be given for the new tasks exactly when the estimator was built with them "
                f"(it was built {'with' if self.reference_standardisation is not None else 'without'}): they are "
                "features of every task."
            )
        if self.reference_standardisation is not None:
            references = check_reference_pass_rates(reference_pass_rates, indices.size)
            features = np.concatenate([features, self.reference_standardisation.apply(references)], axis=1)
        self.features[indices] = features
        self.cache[indices] = sigmoid_predictions(features, self.theta)

    def implicit_weight_scale(self) -> float:
        """The share of ``rho`` the predictions deserve: the honest :attr:`correlation` clipped to [0, 1] (0 before
        the first score), or 1 when ``follow_accuracy`` is off."""
        if not self.follow_accuracy:
            return 1.0
        r = self.correlation
        return min(max(r, 0.0), 1.0) if math.isfinite(r) else 0.0

    # ------------------------------------------------------------------ internals
    def _solve(self) -> None:
        g, h, c = centred_statistics(self.gram, self.moment, self.square)
        if self.ridge == "evidence":
            slopes, self.alpha, self.beta = evidence_fit(g, h, c, self.rows, self.alpha, self.beta)
        else:
            slopes = np.linalg.solve(g + float(self.ridge) * np.eye(g.shape[0]), h)
        self.theta = np.concatenate([[(self.moment[0] - self.gram[0, 1:] @ slopes) / self.gram[0, 0]], slopes])

    def _refresh(self) -> None:
        stop = self.cursor + min(self.refresh_rows, self.num_tasks)
        for part in (slice(self.cursor, min(stop, self.num_tasks)), slice(0, max(stop - self.num_tasks, 0))):
            sigmoid_predictions(self.features[part], self.theta, out=self.cache[part])
        self.cursor = stop % self.num_tasks

    def _score(self, indices: np.ndarray, rates: np.ndarray, trials: np.ndarray) -> None:
        if self.rows == 0:
            return  # no prediction yet: the cache holds the flat start
        usable = trials >= MIN_TRIALS_FOR_ERROR
        q, o, n = self.cache[indices[usable]].astype(np.float64), rates[usable], trials[usable]
        terms = [q.sum(), o.sum(), q @ q, o @ o, q @ o, np.sum(o * (1.0 - o) / (n - 1.0)), float(q.size)]
        self.error_sums = self.accuracy_decay * self.error_sums + np.array(terms)

    @property
    def correlation(self) -> float:
        """Honest correlation of the predictions with the true rates, ``cov(q, o) / sqrt(var q (var o - noise))``
        (the binomial noise ``o (1 - o) / (n - 1)`` removed from the observed variance), in [-1, 1]; NaN while
        undefined."""
        count = self.error_sums[-1]
        if count <= 0:
            return math.nan
        q, o, qq, oo, qo, noise = self.error_sums[:-1] / count
        var_q, var_p = qq - q * q, oo - o * o - noise
        if not (var_q > 0 and var_p > 0):
            return math.nan
        return min(max((qo - q * o) / math.sqrt(var_q * var_p), -1.0), 1.0)

    # ------------------------------------------------------------------ state
    def _replaceable_arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`replace` changes or reads, by state name: the features and the standardisations."""
        arrays = {"features": self.features}
        standardisations = {"embedding": self.embedding_standardisation, "reference": self.reference_standardisation}
        for kind, standardisation in standardisations.items():
            if standardisation is not None:
                arrays.update({f"{kind}_{name}": value for name, value in standardisation._asdict().items()})
        return arrays

    def state_dict(self) -> dict[str, Any]:
        """Arrays (:data:`STATE_ARRAYS`, and with ``replaceable`` the features and standardisations; written as
        tensors of the selector file) and scalars."""
        arrays = {name: getattr(self, name).copy() for name in STATE_ARRAYS}
        if self.replaceable:
            arrays.update({name: value.copy() for name, value in self._replaceable_arrays().items()})
        scalars = {"square": self.square, "rows": self.rows, "alpha": self.alpha, "beta": self.beta}
        return {**arrays, **scalars, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.replaceable != ("features" in state):
            raise ValueError(
                f"The embedding estimator's state was saved with replaceable={not self.replaceable} but this "
                f"estimator has replaceable={self.replaceable}: {'only' if self.replaceable else 'also'} the "
                "features of a replaceable one are state. Resume with the setting the run was saved with."
            )
        expected = {name: getattr(self, name) for name in STATE_ARRAYS}
        if self.replaceable:
            expected.update(self._replaceable_arrays())
        arrays = {}
        for name, current in expected.items():
            array = np.asarray(state[name])
            if array.shape != current.shape or not np.isfinite(array).all():
                raise ValueError(
                    f"The embedding estimator's {name} must be a finite array of shape {current.shape}, got shape "
                    f"{array.shape}: the state belongs to other embeddings (dimension or number of tasks)."
                )
            arrays[name] = np.array(array, dtype=current.dtype)
        for name in STATE_ARRAYS + ("features",):
            if name in arrays:
                setattr(self, name, arrays[name])
        for kind in ("embedding", "reference"):
            if f"{kind}_mean" in arrays:
                standardisation = Standardisation(arrays[f"{kind}_mean"], arrays[f"{kind}_scale"])
                setattr(self, f"{kind}_standardisation", standardisation)
        self.square, self.rows = float(state["square"]), float(state["rows"])
        self.alpha, self.beta, self.cursor = float(state["alpha"]), float(state["beta"]), int(state["cursor"])
