"""Automated canary analysis: the policy, the metrics port and its backends, and the engine that walks a canary."""

from driftloop.rollout.engine import (
    RolloutPolicy,
    RolloutResult,
    StepResult,
    judge,
    judge_quality,
    quality_reader,
    run_rollout,
    scrape_gateway,
)
from driftloop.rollout.metrics import RequestMetrics, ServingTarget, Window

__all__ = ["RequestMetrics", "RolloutPolicy", "RolloutResult", "ServingTarget", "StepResult", "Window", "judge",
           "judge_quality", "quality_reader", "run_rollout", "scrape_gateway"]
