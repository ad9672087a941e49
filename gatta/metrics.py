"""The Prometheus metrics the served classifier reports beside Triton's own ``nv_*`` ones:
each one's name, kind, help text and label, defined once.

The classifier's model.py creates its metric families from this table, the alert rules
(serving/monitoring/alerts.yml) and the Grafana dashboard (serving/monitoring/grafana/) query
them by name, and tests/test_alerts.py and tests/test_monitoring.py fail when a name there is
not one of these, or one of these is watched nowhere. (The client's own metrics, scraped from
the client, are gatta.client.metrics.)

Self-contained on purpose (dataclasses only): the exporter pastes this file's source into the
classifier's model.py, which runs inside Triton and cannot import ``gatta``.
"""

from dataclasses import dataclass

COUNTER, GAUGE = "counter", "gauge"  # pb_utils.MetricFamily.COUNTER / .GAUGE in the model
MODEL_LABEL = "model"  # every series carries the Triton model name


@dataclass(frozen=True)
class Metric:
    """One metric family; ``label``: its label beside ``model``, if any."""

    name: str
    kind: str  # COUNTER or GAUGE
    help: str
    label: str = ""

    def labels(self, model, value=None):
        """The label set of one series: ``{"model": model}``, plus ``{label: str(value)}``."""
        return {MODEL_LABEL: model, **({self.label: str(value)} if self.label else {})}


PREDICTIONS = Metric("gatta_predictions_total", COUNTER, "Top-1 predictions by class", "class")
# The top-1 confidence as a Prometheus histogram (_bucket with cumulative "le" counts, _sum),
# written as plain counters so that histogram_quantile() reads it
CONFIDENCE_BUCKET = Metric("gatta_top1_confidence_bucket", COUNTER,
                           "Top-1 probability, cumulative histogram buckets", "le")
CONFIDENCE_SUM = Metric("gatta_top1_confidence_sum", COUNTER, "Sum of top-1 probabilities")
AGREEMENT = Metric("gatta_agreement_mean", GAUGE, "Mean gatta score per layer, last batch", "layer")
IMAGES = Metric("gatta_images_total", COUNTER, "Images classified")
LESIONED = Metric("gatta_lesioned_requests_total", COUNTER, "Requests whose lesion mask switches off at least one layer")
# reasons: shape, non_finite, <input>_range (gatta.guards.range_refusal), non_finite_output
REJECTED = Metric("gatta_rejected_requests_total", COUNTER, "Requests refused, by reason", "reason")

METRICS = (PREDICTIONS, CONFIDENCE_BUCKET, CONFIDENCE_SUM, AGREEMENT, IMAGES, LESIONED, REJECTED)

# upper bounds ("le") of CONFIDENCE_BUCKET's buckets; a last one, "+Inf", counts every image
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
