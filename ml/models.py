"""The training-run registry and the insights each run writes.

A run is one training of one kind of model. It writes its own rows (segments, forecasts,
suggestions) keyed by the run, and becomes visible by publishing: exactly one published run
per kind, switched in one transaction, so readers never see half-written insights and every
earlier run stays available for rollback.
"""
from django.conf import settings
from django.db import models
from django.db.models import F, Q

from crm.models import Customer, Product


def _run_row_ref(to, **options):
    """A reference from a run's insight row (segment member, forecast, suggestion, similar
    product, prospect) to its run, customer or product, without a database constraint.

    A run writes its rows in bulk, millions of them at scale, and a constraint checks each row
    on its own at commit: 16.5 s of a 72 s recommendation run at 100,000 customers (three checks
    on each of 1.48 M rows). Integrity is kept by the application instead: every delete of a
    customer, product or run goes through the ORM, whose collector deletes these rows
    (``on_delete=CASCADE``, as before), and a run drops the rows of customers and products
    deleted while it was writing, in one set-based pass, before it is published
    (:func:`ml.integrity.drop_orphans`).
    """
    return models.ForeignKey(to, on_delete=models.CASCADE, db_constraint=False, **options)


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        SEGMENTATION = "segmentation"
        FORECAST = "forecast"
        RECOMMENDATION = "recommendation"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"     # trained and published (or publishable, for rollback)
        REJECTED = "rejected"       # trained, but did not beat the naive baseline: not published
        SKIPPED = "skipped"         # the data cannot support this kind (the reason is in error): nothing trained
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    algorithm = models.CharField(max_length=40, default="auto", help_text="Requested algorithm; 'auto' chooses.")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=200, blank=True)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When its task was handed to the broker (or it started in-process). Empty while queued: "
                  "the broker was unreachable, and the sweep or a starting worker sends it.")
    attempts = models.PositiveSmallIntegerField(default=0)
    as_of = models.DateField(null=True, blank=True, help_text="Last day of data the run may see.")
    horizon_days = models.PositiveIntegerField(default=90)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    trigger = models.CharField(max_length=20, default="manual", help_text="manual, schedule, import, command.")
    data_counts = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Holdout metrics and candidate comparison.")
    chosen_algorithm = models.CharField(max_length=80, blank=True)
    error = models.TextField(blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    artefact = models.JSONField(default=dict, blank=True, help_text="Metadata of what the run learned.")
    is_published = models.BooleanField(default=False)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "status"])]
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=Q(is_published=True), name="one_published_run_per_kind"),
            # The database, not the code, guarantees that one kind never trains twice at once
            # and that requests made while a run is queued collapse into it.
            models.UniqueConstraint(fields=["kind"], condition=Q(status="running"), name="one_running_run_per_kind"),
            models.UniqueConstraint(fields=["kind"], condition=Q(status="queued"), name="one_queued_run_per_kind"),
            models.CheckConstraint(condition=Q(progress__lte=100), name="run_progress_percent"),
        ]

    def __str__(self):
        return f"{self.kind} run #{self.pk} ({self.status})"

    @property
    def duration_seconds(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Segment(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="segments")
    key = models.IntegerField()
    name = models.CharField(max_length=200)
    profile = models.TextField(blank=True)
    size = models.PositiveIntegerField(default=0)
    figures = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "-size", "key"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="segment_key_per_run")]

    def __str__(self):
        return self.name


class CustomerSegment(models.Model):
    """A customer's segment in one run; the runs' rows together are the customer's segment history."""

    run = _run_row_ref(TrainingRun, related_name="+", db_index=False)
    customer = _run_row_ref(Customer, related_name="segment_history")
    segment = _run_row_ref(Segment, related_name="members", db_index=False)
    distance = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["run", "customer"]
        constraints = [models.UniqueConstraint(fields=["run", "customer"], name="customer_segment_per_run")]
        indexes = [models.Index(fields=["segment", "customer"])]


class Forecast(models.Model):
    run = _run_row_ref(TrainingRun, related_name="+", db_index=False)
    customer = _run_row_ref(Customer, related_name="forecasts")
    expected_purchases = models.FloatField()
    # NULL: not forecast for this data (e.g. purchases carry no amount, so spend and CLV are not);
    # the run's metrics["targets"] says why. value_at_risk is then NULL too.
    expected_spend = models.FloatField(null=True, blank=True)
    churn_probability = models.FloatField()
    clv = models.FloatField(null=True, blank=True)
    expected_refund_rate = models.FloatField(null=True, blank=True)
    purchases_p10 = models.FloatField(null=True, blank=True)
    purchases_p90 = models.FloatField(null=True, blank=True)
    spend_p10 = models.FloatField(null=True, blank=True)
    spend_p90 = models.FloatField(null=True, blank=True)
    basis = models.CharField(max_length=100, blank=True)
    factors = models.JSONField(default=list, blank=True)
    # Churn probability x CLV, stored when the row is written (the database computes it), so the
    # customer list can sort by it through an index instead of multiplying every customer's row.
    value_at_risk = models.GeneratedField(expression=F("churn_probability") * F("clv"),
                                          output_field=models.FloatField(), db_persist=True)

    class Meta:
        ordering = ["run", "customer"]
        constraints = [
            models.UniqueConstraint(fields=["run", "customer"], name="forecast_per_run_customer"),
            models.CheckConstraint(condition=Q(churn_probability__gte=0, churn_probability__lte=1),
                                   name="forecast_churn_is_probability"),
            models.CheckConstraint(condition=Q(expected_refund_rate__gte=0, expected_refund_rate__lte=1),
                                   name="forecast_refund_rate_is_share"),
        ]
        # One per sortable value, ending in the customer (the tie-breaker): a sorted page of the
        # customer list is read in index order and stops after the page, at any number of customers.
        indexes = [models.Index(fields=["run", value, "customer"], name=f"forecast_run_{short}_idx")
                   for value, short in (("churn_probability", "churn"), ("clv", "clv"),
                                        ("value_at_risk", "var"), ("expected_spend", "spend"),
                                        ("expected_purchases", "purch"))]


class Suggestion(models.Model):
    class Kind(models.TextChoices):
        RECOMMENDATION = "recommendation"  # cross-sell: not bought before
        REORDER = "reorder"                # replenishment: bought before, due again

    run = _run_row_ref(TrainingRun, related_name="+", db_index=False)
    customer = _run_row_ref(Customer, related_name="suggestions", db_index=False)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    rank = models.PositiveSmallIntegerField()
    product = _run_row_ref(Product, related_name="+", db_index=False)
    score = models.FloatField()
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    basis = models.CharField(max_length=40, blank=True)
    # Reorder only: the day the customer is expected to buy the product again (see
    # ml.pipelines.recommendation.reorder.expected_days); the lists show a reorder when it is due.
    expected_on = models.DateField(null=True, blank=True)
    # The customer is in the control group (ml.control): the suggestion is computed and kept, so
    # the uplift can be measured against it, but no list shows it. Fixed when the run writes it.
    control = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["run", "customer", "kind", "rank"]
        constraints = [models.UniqueConstraint(fields=["run", "customer", "kind", "rank"],
                                               name="suggestion_rank_per_run")]


class SimilarProduct(models.Model):
    run = _run_row_ref(TrainingRun, related_name="+", db_index=False)
    product = _run_row_ref(Product, related_name="+", db_index=False)
    rank = models.PositiveSmallIntegerField()
    similar = _run_row_ref(Product, related_name="+", db_index=False)
    score = models.FloatField()
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "product", "rank"]
        constraints = [models.UniqueConstraint(fields=["run", "product", "rank"], name="similar_rank_per_run")]


class Prospect(models.Model):
    """A customer worth pitching a product to."""

    run = _run_row_ref(TrainingRun, related_name="+", db_index=False)
    product = _run_row_ref(Product, related_name="+", db_index=False)
    rank = models.PositiveSmallIntegerField()
    customer = _run_row_ref(Customer, related_name="+", db_index=False)
    score = models.FloatField()
    reason = models.TextField(blank=True)
    control = models.BooleanField(default=False, db_default=False, help_text="In the control group: not shown.")

    class Meta:
        ordering = ["run", "product", "rank"]
        constraints = [models.UniqueConstraint(fields=["run", "product", "rank"], name="prospect_rank_per_run")]


class SuggestionFeedback(models.Model):
    """What a salesperson did with a suggestion, now: its current status. Keyed by customer,
    product and kind (not by the run's row), so it survives retrains and can be counted against
    the models. Every mark is also a :class:`SuggestionEvent` (the funnel), written with it."""

    class Status(models.TextChoices):
        OFFERED = "offered"
        ACCEPTED = "accepted"
        DECLINED = "declined"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="suggestion_feedback")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=Suggestion.Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices)
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The run whose suggestion it was.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["customer", "product", "kind"],
                                               name="one_feedback_per_suggestion")]
        indexes = [models.Index(fields=["run", "status"])]

    def __str__(self):
        return f"{self.status}: {self.product_id} for {self.customer_id}"


class SuggestionEvent(models.Model):
    """One mark of a suggestion (offered, accepted, declined), by whom and when: append-only, so
    an offer later accepted keeps both steps. A purchase of the product by the customer within
    the run's horizon after the first mark is the funnel's "bought" (ml.funnel computes it)."""

    Event = SuggestionFeedback.Status

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="suggestion_events",
                                 db_index=False)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=20, choices=Suggestion.Kind.choices)
    event = models.CharField(max_length=10, choices=Event.choices)
    at = models.DateTimeField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+", db_index=False)
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            db_index=False, help_text="The run whose suggestion it was.")

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["at"], name="suggestion_event_at_idx"),
                   models.Index(fields=["customer", "product", "kind", "at"], name="suggestion_event_key_idx")]

    def __str__(self):
        return f"{self.event}: {self.product_id} for {self.customer_id} at {self.at:%Y-%m-%d %H:%M}"


class ControlSalt(models.Model):
    """The installation's salt for choosing the control group (ml.control): one row, made at
    first use and never changed, so a customer's place survives retrains and key rotations."""

    salt = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)


class ScoringModel(models.Model):
    """What a run's scoring chunks need, stored once by the trainer after the fit: the fitted
    model and its inputs, pickled and compressed (``ml.scoring``), and the run's outcome to
    record when the last chunk is done. Written and read only by our own workers."""

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, primary_key=True, related_name="scoring_model")
    blob = models.BinaryField()
    outcome = models.JSONField(default=dict, blank=True)
    chunks = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)


class ScoringChunk(models.Model):
    """One part of a run's customers (ids first_customer_id..last_customer_id of the trained
    customer list) to score and write, by any worker; the job lifecycle of ``crm.jobs``."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_customer_id = models.BigIntegerField()
    last_customer_id = models.BigIntegerField()
    customers = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    stage = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0, help_text="Rows written.")
    summary = models.JSONField(default=dict, blank=True, help_text="What the run's figures need from this chunk.")
    error = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="scoring_chunk_per_run")]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self):
        return f"chunk {self.index} of run #{self.run_id} ({self.status})"
