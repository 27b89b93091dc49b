"""A seeded generator of a realistic customer table with controllable drift, for each of the three tasks.

The table mixes numeric, categorical and boolean features with a few missing values, an id and an
event-time column; the same customers (same seed, same features) carry one target per task:

* binary — ``churned`` (0/1): did the customer leave;
* multi-class — ``retention_offer``: which of four offers kept the customer (``no_offer`` most often, then
  ``upgrade``, ``discount`` and the rarer ``callback``);
* regression — ``next_month_spend``: the customer's bill next month, in the currency's units.

Two knobs move it away from the reference world:

* ``covariate_shift`` (0–1) moves the feature distributions (older, poorer customers who call support
  more, a different regional mix) while every target's rule stays the same;
* ``concept_shift`` (0–1) changes the task's rule itself, so a model trained before the shift gets worse on
  the task's metric (ROC AUC, macro-F1, RMSE) even on familiar inputs: support calls and price decide churn
  more and tenure protects less; customers who call support now want a discount rather than a callback and
  long-standing ones stop taking upgrades; premium bills rise, promotions upsell and support trouble cuts spend.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from driftloop.tasks import BINARY, INFER, MULTICLASS, REGRESSION, TASKS, check_task

# The target column of each task and the model name the demo registers its table as.
TARGETS: dict[str, str] = {BINARY: "churned", MULTICLASS: "retention_offer", REGRESSION: "next_month_spend"}
MODEL_NAMES: dict[str, str] = {BINARY: "churn", MULTICLASS: "retention-offer", REGRESSION: "spend-forecast"}
TARGET = TARGETS[BINARY]
MODEL_NAME = MODEL_NAMES[BINARY]
# The multi-class target's labels; ``no_offer`` rather than "none", which CSV readers take for a missing value.
OFFERS = ["no_offer", "discount", "upgrade", "callback"]
ID_COLUMN = "customer_id"
TIMESTAMP_COLUMN = "event_time"
REGIONS = ["north", "south", "east", "west", "central"]
PLANS = ["basic", "standard", "premium"]
CHANNELS = ["web", "app", "store", "phone"]


def generate(
    n_rows: int = 5000,
    seed: int = 0,
    covariate_shift: float = 0.0,
    concept_shift: float = 0.0,
    start: datetime | None = None,
    id_offset: int = 0,
    missing_rate: float = 0.02,
    task: str = BINARY,
) -> pd.DataFrame:
    """Generates ``n_rows`` customers with the target of ``task`` (column ``TARGETS[task]``).

    Args:
        n_rows: Number of rows.
        seed: Random seed; the same arguments always give the same table.
        covariate_shift: 0 (reference world) to 1 (strongly shifted inputs).
        concept_shift: 0 (reference label rule) to 1 (strongly changed rule).
        start: Time of the first event; events are one minute apart.
        id_offset: First customer number, so batches from one world do not reuse ids.
        missing_rate: Share of missing values injected into a few columns.
        task: ``binary`` (churn), ``multiclass`` (retention offer) or ``regression`` (next month's spend).
            The features, ids, times and missing values are the same for every task.
    """
    if n_rows <= 0:
        raise ValueError("n_rows must be positive")
    check_task(task)
    rng = np.random.default_rng(seed)
    cs, ks = float(covariate_shift), float(concept_shift)

    age = np.clip(rng.normal(41 + 12 * cs, 12, n_rows), 18, 95).round()
    income = np.clip(rng.lognormal(np.log(52_000) - 0.35 * cs, 0.45, n_rows), 8_000, 400_000).round(-2)
    tenure = np.clip(rng.gamma(2.0, 14 * (1 - 0.45 * cs), n_rows), 0, 180).round()
    monthly_spend = np.clip(rng.normal(70 + 25 * cs, 22, n_rows), 5, 300).round(2)
    support_calls = rng.poisson(1.2 + 2.5 * cs, n_rows).astype(float)
    days_since_login = np.clip(rng.exponential(9 + 10 * cs, n_rows), 0, 365).round()
    credit_score = np.clip(rng.normal(680 - 40 * cs, 60, n_rows), 300, 850).round()
    num_products = rng.integers(1, 6, n_rows).astype(float)

    region_p = _mix([0.25, 0.2, 0.2, 0.2, 0.15], [0.05, 0.45, 0.1, 0.1, 0.3], cs)
    plan_p = _mix([0.45, 0.35, 0.2], [0.25, 0.35, 0.4], cs)
    channel_p = _mix([0.35, 0.35, 0.15, 0.15], [0.15, 0.6, 0.05, 0.2], cs)
    region = rng.choice(REGIONS, n_rows, p=region_p)
    plan = rng.choice(PLANS, n_rows, p=plan_p)
    channel = rng.choice(CHANNELS, n_rows, p=channel_p)
    has_autopay = rng.random(n_rows) < 0.55 - 0.25 * cs
    is_promo = rng.random(n_rows) < 0.2 + 0.3 * cs
    paperless = rng.random(n_rows) < 0.6

    # The label rule; concept shift re-weights it.
    logit = (
        -1.1
        + (0.45 + 0.6 * ks) * (support_calls - 1.5)
        - (0.035 - 0.03 * ks) * (tenure - 25)
        + (0.012 + 0.03 * ks) * (monthly_spend - 75)
        + 0.04 * (days_since_login - 10)
        - 0.004 * (credit_score - 680)
        - 0.25 * (num_products - 3)
        - (0.9 - 1.2 * ks) * has_autopay
        + 0.5 * is_promo
        + np.select([plan == "basic", plan == "premium"], [0.35, -0.45 + 0.9 * ks], 0.0)
        + np.select([channel == "phone", channel == "app"], [0.4, -0.2], 0.0)
        + np.where(region == "south", 0.3 * (1 - 2 * ks), 0.0)
    )
    churned = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)

    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            ID_COLUMN: [f"c{id_offset + i:08d}" for i in range(n_rows)],
            TIMESTAMP_COLUMN: pd.to_datetime([start + timedelta(minutes=i) for i in range(n_rows)], utc=True),
            "age": age,
            "income": income,
            "tenure_months": tenure,
            "monthly_spend": monthly_spend,
            "support_calls": support_calls,
            "days_since_login": days_since_login,
            "credit_score": credit_score,
            "num_products": num_products,
            "region": region,
            "plan": plan,
            "channel": channel,
            "has_autopay": has_autopay,
            "is_promo": is_promo,
            "paperless": paperless,
        }
    )
    if task == BINARY:
        frame[TARGET] = churned
    else:
        # The other targets draw from a stream of their own, so the features and the missing values that follow
        # (and the binary table, bit for bit) are those of the churn table with the same arguments.
        target_rng = np.random.default_rng([seed, TASKS.index(task)])
        rule = _retention_offer if task == MULTICLASS else _next_month_spend
        frame[TARGETS[task]] = rule(frame, ks, target_rng)
    for name in ("income", "days_since_login", "channel"):
        frame[name] = frame[name].where(rng.random(n_rows) >= missing_rate)
    return frame


def task_for(declared: str) -> str:
    """The task of the table to generate for a declared CT task: itself, or binary (churn) for ``auto``."""
    return BINARY if declared == INFER else check_task(declared)


def _mix(reference: list[float], shifted: list[float], amount: float) -> np.ndarray:
    p = (1 - amount) * np.asarray(reference) + amount * np.asarray(shifted)
    return p / p.sum()


def _retention_offer(frame: pd.DataFrame, ks: float, rng: np.random.Generator) -> np.ndarray:
    """The offer that kept each customer: a multinomial draw over :data:`OFFERS` (``no_offer`` is the reference
    logit). Concept shift moves support-call customers from callbacks to discounts, stops long tenure favouring
    upgrades and makes app users take callbacks."""
    calls, tenure = frame["support_calls"].to_numpy(), frame["tenure_months"].to_numpy()
    plan, channel = frame["plan"].to_numpy(), frame["channel"].to_numpy()
    relative_income = np.log(frame["income"].to_numpy() / 52_000)
    discount = (
        -0.9
        + 0.025 * (frame["monthly_spend"].to_numpy() - 75)
        - 0.9 * relative_income
        + 0.7 * frame["is_promo"].to_numpy()
        + (0.05 + 0.75 * ks) * (calls - 1.5)
        + np.where(plan == "basic", 0.4, 0.0)
    )
    upgrade = (
        -1.1
        + 0.55 * (frame["num_products"].to_numpy() - 3)
        + (0.03 - 0.06 * ks) * (tenure - 25)
        + 0.6 * relative_income
        + np.select([plan == "basic", plan == "premium"], [0.9, -1.6], 0.0)
    )
    callback = (
        -1.1
        + (0.8 - 0.9 * ks) * (calls - 1.5)
        + 0.035 * (frame["age"].to_numpy() - 41)
        + np.select([channel == "phone", channel == "app"], [0.9, -0.5 + 1.6 * ks], 0.0)
    )
    # Scaled so the features decide the offer about three times in four (macro-F1 near 0.7 for a linear model).
    logits = 3.0 * np.column_stack([np.zeros(len(frame)), discount, upgrade, callback])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    drawn = (rng.random(len(frame))[:, None] > cumulative[:, :-1]).sum(axis=1)
    return np.asarray(OFFERS, dtype=object)[drawn]


def _next_month_spend(frame: pd.DataFrame, ks: float, rng: np.random.Generator) -> np.ndarray:
    """Next month's bill: mostly this month's, moved by plan, products, tenure, support trouble and promotions,
    with noise. Concept shift raises premium prices, turns promotions from a discount into an upsell and makes
    support trouble cost more spend."""
    plan = frame["plan"].to_numpy()
    spend = (
        4.0
        + 0.9 * frame["monthly_spend"].to_numpy()
        + 5.0 * (frame["num_products"].to_numpy() - 3)
        + np.select([plan == "basic", plan == "premium"], [-5.0, 8.0 + 22.0 * ks], 0.0)
        + 0.06 * (frame["tenure_months"].to_numpy() - 25)
        - (2.0 + 5.0 * ks) * (frame["support_calls"].to_numpy() - 1.5)
        - (9.0 - 16.0 * ks) * frame["is_promo"].to_numpy()
        + rng.normal(0, 7.0, len(frame))
    )
    return np.clip(spend, 0, None).round(2)
