"""A seeded generator of a realistic churn table with controllable drift.

The table mixes numeric, categorical and boolean features with a few missing values, an id and an
event-time column. Two knobs move it away from the reference world:

* ``covariate_shift`` (0–1) moves the feature distributions (older, poorer customers who call support
  more, a different regional mix) while the label rule stays the same;
* ``concept_shift`` (0–1) changes the label rule itself (support calls and price matter more, tenure
  protects less), so a model trained before the shift gets worse even on familiar inputs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

TARGET = "churned"
MODEL_NAME = "churn"  # what the demo registers the generated table as
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
) -> pd.DataFrame:
    """Generates ``n_rows`` customers.

    Args:
        n_rows: Number of rows.
        seed: Random seed; the same arguments always give the same table.
        covariate_shift: 0 (reference world) to 1 (strongly shifted inputs).
        concept_shift: 0 (reference label rule) to 1 (strongly changed rule).
        start: Time of the first event; events are one minute apart.
        id_offset: First customer number, so batches from one world do not reuse ids.
        missing_rate: Share of missing values injected into a few columns.
    """
    if n_rows <= 0:
        raise ValueError("n_rows must be positive")
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
            TARGET: churned,
        }
    )
    for name in ("income", "days_since_login", "channel"):
        frame[name] = frame[name].where(rng.random(n_rows) >= missing_rate)
    return frame


def _mix(reference: list[float], shifted: list[float], amount: float) -> np.ndarray:
    p = (1 - amount) * np.asarray(reference) + amount * np.asarray(shifted)
    return p / p.sum()
