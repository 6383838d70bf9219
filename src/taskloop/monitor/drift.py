"""Drift of the service's inputs: a reference sample against recent traffic.

Two families of tests, one verdict:

- **MMD** on sentence embeddings (the packaged all-MiniLM-L6-v2 by default): the unbiased
  estimate of MMD² with an RBF kernel whose bandwidth is the median heuristic on the
  pooled sample, and a permutation-test p-value. The pooled kernel matrix is computed
  once; each permutation only re-splits its indices, so all permutations are a few
  matrix products.
- **KS** (two-sample Kolmogorov-Smirnov, ``scipy.stats.ks_2samp``) on simple input
  statistics: length in characters, length in words, share of ASCII letters among the
  letters (a language signal: German, French or non-Latin scripts lower it), and the
  unknown-word rate against the reference vocabulary (or a tokenizer's unk-token rate).

Every p-value is Bonferroni-corrected for the number of tests run (p × tests, capped at
1) and drift is reported when any corrected p-value is below ``alpha``, so the chance of
a false alarm on undrifted traffic is at most ``alpha``.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import warnings
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel

from taskloop.errors import ExitStatus, InputFileError, TaskloopError

if TYPE_CHECKING:
    from taskloop.data.records import Example
    from taskloop.monitor.metrics import Metrics


class DriftError(TaskloopError):
    """A drift check that cannot run: too few inputs, a bad alpha, a missing field."""

    code = "monitor.drift"
    exit_status = ExitStatus.USAGE


class Embedder(Protocol):
    """Anything that embeds texts into rows of a matrix (``taskloop.models.encoder.Encoder``)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class KS(BaseModel):
    """One KS test on one input statistic."""

    feature: str
    statistic: float  # sup |F_ref - F_cur|
    p_value: float
    corrected_p: float  # Bonferroni: min(1, p_value x tests in the report)
    ref_mean: float
    cur_mean: float


class DriftReport(BaseModel):
    """The verdict of one drift check and every test behind it."""

    drifted: bool  # any corrected p-value < alpha
    alpha: float
    n_ref: int
    n_cur: int
    compared: str  # what the texts are (e.g. "qa question of ref.jsonl vs ...")
    tests: int  # the Bonferroni factor
    mmd2: float | None = None  # unbiased MMD² of the embeddings (None: MMD not run)
    mmd_p: float | None = None  # permutation-test p-value, raw
    mmd_corrected_p: float | None = None
    bandwidth: float | None = None  # sigma of the RBF kernel
    permutations: int = 0
    mmd_samples: tuple[int, int] | None = None  # texts per side the MMD used
    encoder: str | None = None
    ks: list[KS] = []

    def p_values(self) -> dict[str, float]:
        """Corrected p-value per test name (``mmd``, ``ks_chars`` ...), as the gauges show."""
        out = {f"ks_{k.feature}": k.corrected_p for k in self.ks}
        if self.mmd_corrected_p is not None:
            out = {"mmd": self.mmd_corrected_p, **out}
        return out


# ---------------------------------------------------------------- corrections


def bonferroni(p_values: Sequence[float], tests: int | None = None) -> list[float]:
    """Each p-value times the number of tests (``len(p_values)`` unless given), capped at 1."""
    n = len(p_values) if tests is None else tests
    return [min(1.0, p * n) for p in p_values]


# ---------------------------------------------------------------- MMD


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, shape (len(a), len(b)), float64, >= 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d2: np.ndarray = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    np.maximum(d2, 0.0, out=d2)  # rounding can make a zero distance slightly negative
    return d2


def median_bandwidth(d2: np.ndarray) -> float:
    """sigma with sigma² = the median squared distance between distinct points of a square
    distance matrix; falls back to the mean of the non-zero ones (then 1) when most
    points coincide."""
    upper = d2[np.triu_indices(len(d2), k=1)]
    med = float(np.median(upper)) if upper.size else 0.0
    if med <= 0:
        nonzero = upper[upper > 0]
        med = float(nonzero.mean()) if nonzero.size else 1.0
    return float(np.sqrt(med))


def mmd2_from_masks(kernel: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each split of the pooled sample given by a row of ``masks``.

    With ``a`` a 0/1 row (1 = first sample, m ones, n zeros) and ``b = 1 - a``::

        MMD²_u = (aᵀKa - Σ_{i∈X} K_ii) / (m(m-1)) + (bᵀKb - Σ_{j∈Y} K_jj) / (n(n-1))
                 - 2 aᵀKb / (mn)

    Args:
        kernel: the pooled kernel matrix K, shape (N, N).
        masks: shape (P, N), one split per row.

    Returns:
        shape (P,).
    """
    a = masks.astype(np.float64)
    m = a.sum(1)
    n = kernel.shape[0] - m
    diag = np.diag(kernel)
    row_sums = kernel.sum(1)
    ka = a @ kernel  # (P, N)
    xx = (ka * a).sum(1)
    xy = a @ row_sums - xx
    yy = row_sums.sum() - xx - 2.0 * xy
    tr_x = a @ diag
    tr_y = diag.sum() - tr_x
    out: np.ndarray = (xx - tr_x) / (m * (m - 1)) + (yy - tr_y) / (n * (n - 1)) - 2.0 * xy / (m * n)
    return out


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    p_value: float
    bandwidth: float
    permutations: int


def mmd_permutation(
    ref_emb: np.ndarray,
    cur_emb: np.ndarray,
    *,
    permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
    chunk: int = 100,
) -> MMDResult:
    """Unbiased MMD² between two samples and its permutation-test p-value.

    p = (1 + #{permutations with MMD² >= observed}) / (1 + permutations), so it is never
    0 and the smallest reachable value is 1 / (1 + permutations).

    Raises:
        DriftError: a sample with fewer than 2 rows, or ``permutations`` < 1.
    """
    x = np.asarray(ref_emb, dtype=np.float64)
    y = np.asarray(cur_emb, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise DriftError(
            f"MMD needs at least 2 inputs on each side; got {len(x)} and {len(y)}",
            hint="collect more inputs before checking drift",
        )
    if permutations < 1:
        raise DriftError(f"permutations must be >= 1, got {permutations}")
    pooled = np.concatenate([x.reshape(len(x), -1), y.reshape(len(y), -1)])
    d2 = squared_distances(pooled, pooled)
    sigma = bandwidth if bandwidth is not None else median_bandwidth(d2)
    kernel = np.exp(-d2 / (2.0 * sigma * sigma))
    size, m = len(pooled), len(x)

    observed_mask = np.zeros((1, size), dtype=bool)
    observed_mask[0, :m] = True
    observed = float(mmd2_from_masks(kernel, observed_mask)[0])

    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, permutations, chunk):
        p = min(chunk, permutations - start)
        # argsort of uniform noise: p independent random permutations at once
        first = np.argsort(rng.random((p, size)), axis=1)[:, :m]
        masks = np.zeros((p, size), dtype=bool)
        np.put_along_axis(masks, first, True, axis=1)
        stats = mmd2_from_masks(kernel, masks)
        at_least += int((stats >= observed - 1e-12).sum())
    return MMDResult(observed, (1 + at_least) / (1 + permutations), float(sigma), permutations)


def mmd_test(
    ref_emb: np.ndarray, cur_emb: np.ndarray, *, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """(unbiased MMD², permutation p-value) of two embedding samples (rows are points)."""
    result = mmd_permutation(ref_emb, cur_emb, permutations=permutations, seed=seed)
    return result.mmd2, result.p_value


# ---------------------------------------------------------------- KS on input statistics

_WORD = re.compile(r"\w+", re.UNICODE)
FEATURES = ("chars", "words", "ascii_letters", "unknown_rate")


class Tokenizer(Protocol):
    """A Hugging Face tokenizer: called on texts, with an ``unk_token_id``."""

    unk_token_id: int | None

    def __call__(self, text: list[str], **kwargs: Any) -> Any: ...


def ascii_letter_share(text: str) -> float:
    """ASCII letters / all letters (1.0 for a text without letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    return sum(c.isascii() for c in letters) / len(letters)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (runs of letters, digits and underscores)."""
    return _WORD.findall(text.lower())


def unknown_rates(
    ref_texts: Sequence[str], cur_texts: Sequence[str]
) -> tuple[list[float], list[float]]:
    """Share of each text's words that the reference vocabulary lacks.

    A reference text is judged against the vocabulary of the *other* reference texts
    (leave-one-out: a word counts as unknown when no other reference text has it);
    judged against a vocabulary that includes itself, every reference text would score
    0 and undrifted traffic, which always brings some rare words, would look drifted.
    """
    ref_words = [words(t) for t in ref_texts]
    doc_freq: Counter[str] = Counter()
    for ws in ref_words:
        doc_freq.update(set(ws))

    def rate(ws: list[str], own: bool) -> float:
        if not ws:
            return 0.0
        floor = 1 if own else 0  # own: the text itself accounts for one document
        return sum(doc_freq[w] <= floor for w in ws) / len(ws)

    return [rate(ws, True) for ws in ref_words], [rate(words(t), False) for t in cur_texts]


def unk_token_rates(texts: Sequence[str], tokenizer: Tokenizer) -> list[float]:
    """Share of each text's tokens that are the tokenizer's unknown token."""
    unk = tokenizer.unk_token_id
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(sum(t == unk for t in row) / len(row)) if row else 0.0 for row in ids]


def text_features(
    ref_texts: Sequence[str], cur_texts: Sequence[str], tokenizer: Tokenizer | None = None
) -> dict[str, tuple[list[float], list[float]]]:
    """Per feature in :data:`FEATURES`: (reference values, current values)."""
    out: dict[str, tuple[list[float], list[float]]] = {
        "chars": ([len(t) for t in ref_texts], [len(t) for t in cur_texts]),
        "words": ([len(words(t)) for t in ref_texts], [len(words(t)) for t in cur_texts]),
        "ascii_letters": (
            [ascii_letter_share(t) for t in ref_texts],
            [ascii_letter_share(t) for t in cur_texts],
        ),
    }
    if tokenizer is not None and tokenizer.unk_token_id is not None:
        out["unknown_rate"] = (
            unk_token_rates(ref_texts, tokenizer),
            unk_token_rates(cur_texts, tokenizer),
        )
    else:
        out["unknown_rate"] = unknown_rates(ref_texts, cur_texts)
    return out


def ks_tests(
    ref_texts: Sequence[str],
    cur_texts: Sequence[str],
    *,
    tokenizer: Tokenizer | None = None,
    tests: int | None = None,
) -> list[KS]:
    """Two-sample KS test per input statistic, Bonferroni-corrected.

    Args:
        tokenizer: measure the unk-token rate with it instead of unknown words.
        tests: the Bonferroni factor (default: the number of KS tests; a caller that
            runs more tests in the same verdict passes the total).

    Raises:
        DriftError: either side is empty.
    """
    from scipy.stats import ks_2samp

    if not ref_texts or not cur_texts:
        raise DriftError(
            f"KS tests need inputs on both sides; got {len(ref_texts)} and {len(cur_texts)}"
        )
    feats = text_features(ref_texts, cur_texts, tokenizer)
    raw: list[tuple[str, float, float, float, float]] = []
    for name, (ref, cur) in feats.items():
        with warnings.catch_warnings():
            # With many ties scipy falls back from the exact to the asymptotic p-value,
            # which is the right one at these sizes; the warning would only be noise.
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
            result = ks_2samp(ref, cur)
        raw.append((name, float(result.statistic), float(result.pvalue), _mean(ref), _mean(cur)))
    corrected = bonferroni([r[2] for r in raw], tests)
    return [
        KS(feature=name, statistic=stat, p_value=p, corrected_p=c, ref_mean=rm, cur_mean=cm)
        for (name, stat, p, rm, cm), c in zip(raw, corrected, strict=True)
    ]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


# ---------------------------------------------------------------- the verdict


def _sample(texts: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
    if len(texts) <= k:
        return list(texts)
    return [texts[i] for i in sorted(rng.choice(len(texts), size=k, replace=False))]


def detect_drift(
    ref_texts: Sequence[str],
    cur_texts: Sequence[str],
    *,
    encoder: Embedder | None = None,
    alpha: float = 0.05,
    permutations: int = 500,
    seed: int = 0,
    mmd: bool = True,
    max_mmd_samples: int = 1000,
    tokenizer: Tokenizer | None = None,
    compared: str = "texts",
) -> DriftReport:
    """Whether ``cur_texts`` drifted from ``ref_texts``: MMD on embeddings plus KS tests.

    Args:
        encoder: embeds the texts for MMD (default: the packaged MiniLM, loaded once).
        alpha: family-wise false-alarm rate; drift when any corrected p < alpha.
        permutations: of the MMD permutation test (the smallest p is 1/(1+permutations)).
        mmd: False runs the KS tests only (no encoder needed).
        max_mmd_samples: at most this many texts per side go into the MMD (a random
            sample, seeded): the kernel matrix grows with the square of the count.
        compared: what the texts are, for the report.

    Raises:
        DriftError: fewer than 2 inputs on a side, or alpha outside (0, 1).
        ModelNotFoundError: no encoder given and the packaged one is not installed.
    """
    if not 0 < alpha < 1:
        raise DriftError(f"alpha must be between 0 and 1, got {alpha}")
    if len(ref_texts) < 2 or len(cur_texts) < 2:
        raise DriftError(
            f"a drift check needs at least 2 inputs on each side; got {len(ref_texts)} "
            f"reference and {len(cur_texts)} current",
            hint="give more inputs (one per line in a .txt, or task files)",
        )
    tests = len(FEATURES) + (1 if mmd else 0)
    ks = ks_tests(ref_texts, cur_texts, tokenizer=tokenizer, tests=tests)
    report = DriftReport(
        drifted=False,
        alpha=alpha,
        n_ref=len(ref_texts),
        n_cur=len(cur_texts),
        compared=compared,
        tests=tests,
        ks=ks,
    )
    if mmd:
        if encoder is None:
            from taskloop.models.encoder import load_encoder

            encoder = load_encoder()
        rng = np.random.default_rng(seed)
        ref = _sample(ref_texts, max_mmd_samples, rng)
        cur = _sample(cur_texts, max_mmd_samples, rng)
        result = mmd_permutation(
            encoder.encode(ref), encoder.encode(cur), permutations=permutations, seed=seed
        )
        report.mmd2 = result.mmd2
        report.mmd_p = result.p_value
        report.mmd_corrected_p = bonferroni([result.p_value], tests)[0]
        report.bandwidth = result.bandwidth
        report.permutations = permutations
        report.mmd_samples = (len(ref), len(cur))
        report.encoder = str(getattr(encoder, "name", type(encoder).__name__))
    report.drifted = any(p < alpha for p in report.p_values().values())
    return report


# ---------------------------------------------------------------- inputs

# The text that stands for a task input: what a model reads that users choose.
DEFAULT_FIELD: dict[str, str] = {
    "translate": "source",
    "summarize": "document",
    "qa": "question",
    "codegen": "prompt",
}


def example_text(example: Example, field: str | None = None) -> str:
    """The text of ``example`` that drift is measured on (``field``, or the task's default:
    translate source, summarize document, qa question, codegen prompt).

    Raises:
        DriftError: the example has no text field ``field``.
    """
    name = field or DEFAULT_FIELD[example.task]
    value = getattr(example, name, None)
    if not isinstance(value, str):
        raise DriftError(
            f"{example.where} ({example.task}) has no text field {name!r}",
            hint="use --field only with tasks that have it, or leave it out to compare "
            "each task's main input ("
            + ", ".join(f"{t} {f}" for t, f in DEFAULT_FIELD.items())
            + ")",
        )
    return value


@dataclass(frozen=True)
class Texts:
    """Texts read from one input, and what they are."""

    texts: list[str]
    what: str  # "lines", "qa question", "qa question + translate source", "text field"
    source: str


def _open_text(path: Path) -> list[str]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return fh.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def load_texts(path: str | Path, *, field: str | None = None) -> Texts:
    """Inputs to compare from ``path``.

    ``.txt`` (or ``.txt.gz``): one input per non-empty line. Task files, folders, archives
    and blobs (anything ``taskloop run`` reads): each example's :func:`example_text`.
    A JSON Lines file whose rows are not task rows: each row's ``field`` (default
    ``text``), or the row itself when it is a JSON string.

    Raises:
        InputFileError: ``path`` does not exist or cannot be read.
        DriftError: no input found, or an example without ``field``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(
            f"{p}: no such file or folder",
            hint="give a .txt (one input per line), task files, a folder or a task archive",
        )
    try:
        if p.name.lower().endswith((".txt", ".txt.gz")):
            lines = [line.strip() for line in _open_text(p)]
            return Texts([line for line in lines if line], "lines", str(p))
        from taskloop.train.inputs import read_inputs

        inputs = read_inputs([str(p)])
        if inputs.examples:
            texts = [example_text(ex, field) for ex in inputs.examples]
            names = (f"{ex.task} {field or DEFAULT_FIELD[ex.task]}" for ex in inputs.examples)
            kinds = dict.fromkeys(names)  # ordered, unique
            return Texts(texts, " + ".join(kinds), str(p))
        if p.is_file() and p.name.lower().endswith((".jsonl", ".jsonl.gz")):
            rows = _plain_rows(p, field or "text")
            if rows:
                return Texts(rows, f"{field or 'text'} field", str(p))
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{p}: not UTF-8 text (byte {exc.start})", hint="save the inputs as UTF-8"
        ) from exc
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    first = f"; first problem: {inputs.errors[0]}" if inputs.errors else ""
    raise DriftError(
        f"no inputs found in {p}{first}",
        hint="give a .txt (one input per line), task files or archives, or JSON Lines "
        "rows with a text field (--field NAME)",
    )


def _plain_rows(path: Path, field: str) -> list[str]:
    out: list[str] = []
    for line in _open_text(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return []
        value = row if isinstance(row, str) else row.get(field) if isinstance(row, dict) else None
        if isinstance(value, str) and value.strip():
            out.append(value)
    return out


# ---------------------------------------------------------------- the service's monitor


class DriftMonitor:
    """A reference window and a rolling window of recent inputs; checks drift on demand.

    The reference is given (a list, or :meth:`from_file`) or, when not, the first
    ``window`` inputs of traffic. After that each input enters the current window (the
    last ``window`` inputs). ``add`` is cheap and thread-safe; ``check`` runs the tests
    (seconds: embeddings and permutations), so the service calls it off the request
    path. With ``metrics``, each check sets ``taskloop_drift_p_value{test}`` (corrected)
    and ``taskloop_drift_detected``.

    Args:
        window: inputs per window.
        reference: reference inputs; None takes the first ``window`` inputs of traffic.
        min_current: inputs the current window needs before a check runs (default: full).
        detect: the test (``detect_drift`` with its defaults unless replaced); called
            as ``detect(reference, current)``.
    """

    def __init__(
        self,
        *,
        window: int = 200,
        reference: Sequence[str] | None = None,
        metrics: Metrics | None = None,
        min_current: int | None = None,
        detect: Callable[[Sequence[str], Sequence[str]], DriftReport] | None = None,
    ) -> None:
        if window < 2:
            raise DriftError(f"the drift window must hold at least 2 inputs, got {window}")
        self.window = window
        self.min_current = max(2, min(window, min_current if min_current else window))
        self.metrics = metrics
        self.detect = detect or (
            lambda ref, cur: detect_drift(ref, cur, compared="reference vs recent inputs")
        )
        self._reference: list[str] | None = list(reference) if reference is not None else None
        self._pending: list[str] = []
        self._current: deque[str] = deque(maxlen=window)
        self._added = 0  # inputs in the current window since the last check
        self._last: DriftReport | None = None
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()  # one check at a time; add() never waits on it

    @classmethod
    def from_file(
        cls, path: str | Path, *, field: str | None = None, **kwargs: Any
    ) -> DriftMonitor:
        """A monitor whose reference is read from ``path`` (see :func:`load_texts`)."""
        return cls(reference=load_texts(path, field=field).texts, **kwargs)

    def add(self, text: str) -> None:
        """Record one input (into the reference until it is full, then the current window)."""
        with self._lock:
            if self._reference is None:
                self._pending.append(text)
                if len(self._pending) >= self.window:
                    self._reference, self._pending = self._pending, []
                return
            self._current.append(text)
            self._added += 1

    @property
    def reference_size(self) -> int:
        with self._lock:
            return len(self._reference) if self._reference is not None else len(self._pending)

    @property
    def current_size(self) -> int:
        with self._lock:
            return len(self._current)

    @property
    def new_since_check(self) -> int:
        """Inputs that entered the current window since the last check."""
        with self._lock:
            return self._added

    @property
    def last(self) -> DriftReport | None:
        """The report of the last check, None before the first."""
        with self._lock:
            return self._last

    def check(self) -> DriftReport | None:
        """Run the tests on the windows as they are now and return the report; the last
        report (or None) when the windows are not full enough or nothing new came in."""
        with self._check_lock:
            with self._lock:
                if (
                    self._reference is None
                    or len(self._current) < self.min_current
                    or self._added == 0
                ):
                    return self._last
                ref, cur = list(self._reference), list(self._current)
                self._added = 0
            report = self.detect(ref, cur)
            with self._lock:
                self._last = report
            if self.metrics is not None:
                for test, p in report.p_values().items():
                    self.metrics.drift_p_value.labels(test=test).set(p)
                self.metrics.drift_detected.set(1 if report.drifted else 0)
            return report
