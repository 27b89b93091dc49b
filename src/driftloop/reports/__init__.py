"""Human-facing reports: the evaluation page, the model card and the validation page.

They render in the Kubeflow dashboard (HTML and Markdown artifacts) and open from the registry. One module per
page; :mod:`~driftloop.reports.facts` holds what they share (the run's header, metric comparisons, the trigger
in words), :mod:`~driftloop.reports.html` and :mod:`~driftloop.reports.svg` the building blocks.
"""

from driftloop.reports.evaluation import EvaluationPage, evaluation_report_html
from driftloop.reports.facts import RunFacts, trigger_sentence
from driftloop.reports.model_card import model_card
from driftloop.reports.validation import ValidationPage, validation_report_html

__all__ = ["EvaluationPage", "RunFacts", "ValidationPage", "evaluation_report_html", "model_card",
           "trigger_sentence", "validation_report_html"]
