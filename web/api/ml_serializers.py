"""Request and response shapes of the models' resources: segments, similar products and
prospects, training runs and retrain requests. Thin, as web.api.serializers."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ml import run_reports
from ml.models import Segment, TrainingRun
from web.api.serializers import JSONObjectField


class SimilarProductSerializer(serializers.Serializer):
    sku = serializers.CharField(source="similar.sku")
    name = serializers.CharField(source="similar.name")
    rank = serializers.IntegerField()
    score = serializers.FloatField()
    reason = serializers.CharField()


class ProspectSerializer(serializers.Serializer):
    customer = serializers.IntegerField(source="customer_id")
    external_id = serializers.CharField(source="customer.external_id")
    name = serializers.CharField(source="customer.name")
    owner = serializers.CharField(source="customer.owner.username", allow_null=True, default=None)
    rank = serializers.IntegerField()
    score = serializers.FloatField()
    reason = serializers.CharField()


class SegmentSerializer(serializers.ModelSerializer):
    figures = JSONObjectField()

    class Meta:
        model = Segment
        fields = ("id", "run", "key", "name", "profile", "size", "figures")


class SegmentQuerySerializer(serializers.Serializer):
    run = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                   help_text="A segmentation run's id (default: the published run).")


_TARGET_OUTCOME = {"type": "object", "properties": {
    "forecast": {"type": "boolean", "description": "False: the Forecast column is null for every customer."},
    "reason": {"type": "string", "description": "Why it is not forecast, in words (when forecast is false)."},
    "algorithm": {"type": "string"}, "basis": {"type": "string", "enum": ["model", "baseline", "not validated"]}},
    "additionalProperties": True}
_CHOICE = {"type": "object", "properties": {
    "metric": {"type": "string", "description": "e.g. `orders RMSE`, `churn AUC`, `NDCG@10`."},
    "lower_is_better": {"type": "boolean"},
    "chosen": {"type": "string", "description": "The candidate published."},
    "best": {"type": "string", "description": "The candidate with the best mean over the origins."},
    "baseline": {"type": "string", "description": "The baseline's name among the candidates."},
    "is_baseline": {"type": "boolean", "description": "The baseline was published (no model beat it)."},
    "mean": {"type": "object", "additionalProperties": {"type": "number", "nullable": True}},
    "spread": {"type": "object", "additionalProperties": {"type": "number", "nullable": True},
               "description": "Standard error of each candidate's per-origin difference to the best."},
    "origins": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number",
                                                                                       "nullable": True}},
                "description": "Each candidate's metric on each origin, in the order of backtest.origins."},
    "reason": {"type": "string", "description": "Why the chosen candidate was chosen, in words."}},
    "additionalProperties": True}
RUN_METRICS_SCHEMA = {
    "type": "object", "additionalProperties": True,
    "description": "What the run measured and published. Every kind writes `outcome` and `backtest`; a "
                   "forecast run also `targets`; a recommendation run may add `reorder_reason` and "
                   "`cross_sell_reason` (why those lists can be empty). Other keys (model, baselines, series, "
                   "candidates) are holdout figures of the most recent backtest window.",
    "properties": {
        "outcome": {"type": "object", "properties": {
            "basis": {"type": "string", "enum": ["model", "baseline", "not validated"],
                      "description": "model: a model beat the baselines; baseline: none did, so the baseline "
                                     "was published; not validated: too little history to hold a window back."},
            "summary": {"type": "string", "description": "One line in plain words."}}, "additionalProperties": True},
        "backtest": {"type": "object", "additionalProperties": True, "properties": {
            "as_of": {"type": "string", "format": "date"}, "horizon_days": {"type": "integer"},
            "history_days": {"type": "integer"}, "window_days": {"type": "integer"},
            "validated": {"type": "boolean"},
            "reason": {"type": "string", "description": "e.g. `validated on 2 windows of 90 days`, "
                                                        "`not yet validated: 18 days of history`."},
            "origins": {"type": "array", "items": {"type": "object", "additionalProperties": True, "properties": {
                "cut": {"type": "string", "format": "date", "description": "Last day the backtest fit saw."},
                "first_day": {"type": "string", "format": "date"}, "last_day": {"type": "string", "format": "date"},
                "customers": {"type": "integer"},
                "scores": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {
                    "type": "number", "nullable": True}}}}}},
            "choice": {"type": "object", "additionalProperties": _CHOICE,
                       "description": "Per target (forecast: orders, spend, churn; recommendation: cross_sell, "
                                      "reorder; segmentation: segments)."}}},
        "targets": {"type": "object", "additionalProperties": _TARGET_OUTCOME,
                    "description": "Forecast runs: per target (orders, spend, churn, clv, refund_rate) whether "
                                   "it was forecast, and if not, why."},
        "reorder_reason": {"type": "string"}, "cross_sell_reason": {"type": "string"},
    },
}


@extend_schema_field(RUN_METRICS_SCHEMA)
class RunMetricsField(serializers.JSONField):
    """A run's metrics as stored, documented (RUN_METRICS_SCHEMA)."""


@extend_schema_field(str)
class RunErrorField(serializers.Field):
    """A run's error as one sentence (ml.run_reports.run_error_sentence): a traceback stays in the log and
    the admin's run detail, and no server path is ever sent."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, run):
        return run_reports.run_error_sentence(run)


class TrainingRunSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    status = serializers.ChoiceField(
        TrainingRun.Status.choices, read_only=True,
        help_text="queued, running; succeeded (trained, published or publishable); skipped (the data cannot "
                  "support this kind, e.g. no product catalogue: nothing trained, the reason in `error`, the "
                  "published run stays); rejected (older runs: did not pass the publish gate); failed; cancelled.")
    error = RunErrorField(help_text="Why a run failed, or why it was skipped, in one sentence (empty otherwise).")
    metrics = RunMetricsField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = ("id", "kind", "algorithm", "chosen_algorithm", "params", "status", "stage", "progress",
                  "is_published", "as_of", "horizon_days", "trigger", "requested_by", "attempts", "data_counts",
                  "metrics", "timings", "error", "library_versions", "created_at", "started_at", "finished_at",
                  "published_at", "duration_seconds")
        read_only_fields = fields


class TrainingRunQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(TrainingRun.Kind.values, required=False)
    status = serializers.ChoiceField(TrainingRun.Status.values, required=False)


class RetrainRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(TrainingRun.Kind.values)
    as_of = serializers.DateField(required=False, allow_null=True,
                                  help_text="Last day of data the run may see (default: the latest interaction's).")
    horizon_days = serializers.IntegerField(required=False, default=90, min_value=1, max_value=3650)
    algorithm = serializers.RegexField(r"^[a-z0-9_-]{1,40}$", required=False, default="auto")


class RetrainResponseSerializer(serializers.Serializer):
    created = serializers.BooleanField(help_text="False when the request joined a run already queued.")
    run = TrainingRunSerializer()
