"""Automated canary analysis: the policy, the metrics port and its backends, the quality check, and the
engine that walks a canary through the deployment port."""

from driftloop.rollout.engine import RolloutResult, StepResult, judge, run_rollout
from driftloop.rollout.gateway_metrics import GatewayRequestMetrics, scrape_gateway
from driftloop.rollout.metrics import RequestMetrics, ServingTarget, Window
from driftloop.rollout.policy import RolloutPolicy
from driftloop.rollout.quality import judge_quality, quality_reader

__all__ = ["GatewayRequestMetrics", "RequestMetrics", "RolloutPolicy", "RolloutResult", "ServingTarget",
           "StepResult", "Window", "judge", "judge_quality", "quality_reader", "run_rollout", "scrape_gateway"]
