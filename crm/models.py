"""The CRM's domain: customers, products, interactions, and the record of each import.

Field names follow the import contract (README, "Import format"). Every rule the contract
states is also a database constraint, so no door (import, admin, API, raw SQL) can break it.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from crm import limits

INTERACTION_TYPES = ("purchase", "refund", "view", "email", "call", "meeting", "support", "note")

# Role names, created as auth groups by a data migration.
ROLE_SALES_REP = "sales rep"
ROLE_MANAGER = "manager"
ROLE_ADMIN = "admin"
ROLES = (ROLE_SALES_REP, ROLE_MANAGER, ROLE_ADMIN)


class Customer(models.Model):
    # Uniqueness as a constraint, not unique=True: on PostgreSQL that would add a second,
    # pattern-ops index that every import row has to maintain and no query uses.
    external_id = models.CharField(max_length=limits.CUSTOMER["external_id"], help_text="The customer's key in the source system.")
    name = models.CharField(max_length=limits.CUSTOMER["name"], blank=True)
    email = models.EmailField(max_length=limits.CUSTOMER["email"], blank=True)
    phone = models.CharField(max_length=limits.CUSTOMER["phone"], blank=True)
    company = models.CharField(max_length=limits.CUSTOMER["company"], blank=True)
    country = models.CharField(max_length=limits.CUSTOMER["country"], blank=True)
    city = models.CharField(max_length=limits.CUSTOMER["city"], blank=True)
    signup_date = models.DateField(null=True, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="customers", help_text="The sales rep who owns the account.",
    )
    attributes = models.JSONField(default=dict, blank=True, help_text="Extra columns of the import file.")
    no_profiling = models.BooleanField(
        default=False, db_default=False, help_text="The customer objected to profiling: no segment, forecast or suggestions, "
                                 "and left out of training.")
    # Kept up to date by the import and by logging a purchase, so lists can sort and filter on it.
    last_purchase_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set by crm.privacy.erase_customer: the row stays as an empty tombstone (see README, "Privacy and audit").
    erased_at = models.DateTimeField(null=True, blank=True, help_text="When the customer's personal data was erased.")
    tags = models.ManyToManyField("Tag", through="CustomerTag", related_name="customers", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "external_id"]
        indexes = [
            models.Index(fields=["owner", "name"]),
            # The customer list's default order: a page by name is read from the index, not sorted.
            models.Index(fields=["name", "external_id"], name="customer_name_idx"),
            models.Index(fields=["email"]),
            models.Index(fields=["company"]),
            # The few customers who objected to profiling: counting a segment's other members looks
            # them up here instead of scanning every customer.
            models.Index(fields=["id"], condition=Q(no_profiling=True), name="customer_no_profiling_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="customer_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_id=""), name="customer_external_id_not_empty"),
        ]

    def __str__(self):
        return self.name or self.external_id


class Tag(models.Model):
    """A label salespeople put on customers ("vip", "trade fair 2026"); names are unique whatever
    their case, and keep the case they were first written in."""

    name = models.CharField(max_length=limits.TAG_NAME)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = [Lower("name")]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="tag_name_unique_ci"),
            models.CheckConstraint(condition=~Q(name=""), name="tag_name_not_empty"),
        ]

    def __str__(self):
        return self.name


class CustomerTag(models.Model):
    """A tag on a customer: who put it there and when."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+", db_index=False)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+", db_index=False)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # The unique (customer, tag) index serves a customer's tags; (tag, customer) the list's tag filter.
        constraints = [models.UniqueConstraint(fields=["customer", "tag"], name="customer_tag_unique")]
        indexes = [models.Index(fields=["tag", "customer"], name="customer_tag_by_tag")]

    def __str__(self):
        return f"{self.tag_id} on {self.customer_id}"


class Product(models.Model):
    sku = models.CharField(max_length=limits.PRODUCT["sku"])
    name = models.CharField(max_length=limits.PRODUCT["name"])
    category = models.CharField(max_length=limits.PRODUCT["category"], blank=True, db_index=True)
    price = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    description = models.TextField(blank=True)
    tags = models.CharField(max_length=limits.PRODUCT["tags"], blank=True, help_text="';'-separated.")
    active = models.BooleanField(default=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="Extra columns of the import file.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["sku"], name="product_sku_unique"),
            models.CheckConstraint(condition=~Q(sku=""), name="product_sku_not_empty"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="product_price_non_negative"),
        ]

    def __str__(self):
        return f"{self.name} ({self.sku})"

    @property
    def tag_list(self):
        return [t for t in (s.strip() for s in self.tags.split(";")) if t]


class Interaction(models.Model):
    class Type(models.TextChoices):
        PURCHASE = "purchase"
        REFUND = "refund"
        VIEW = "view"
        EMAIL = "email"
        CALL = "call"
        MEETING = "meeting"
        SUPPORT = "support"
        NOTE = "note"

    # Always set: the source's key when the file gives one, else a key derived from the row's
    # content (``h-…``), so re-importing the same file is idempotent either way.
    external_id = models.CharField(max_length=limits.INTERACTION["external_id"])
    # The FK indexes are left out: the (customer, occurred_at) and (product, occurred_at)
    # indexes below serve those lookups, and every extra index slows bulk imports.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="interactions", db_index=False)
    type = models.CharField(max_length=10, choices=Type.choices)
    occurred_at = models.DateTimeField()
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="interactions",
                                db_index=False)
    quantity = models.IntegerField(default=1)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    order_ref = models.CharField(max_length=limits.INTERACTION["order_ref"], blank=True)
    channel = models.CharField(max_length=limits.INTERACTION["channel"], blank=True)
    notes = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="Extra columns of the import file.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "occurred_at"]),
            models.Index(fields=["type", "occurred_at"]),
            models.Index(fields=["product", "occurred_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(type__in=INTERACTION_TYPES), name="interaction_type_allowed"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="interaction_quantity_non_negative"),
            models.CheckConstraint(condition=Q(amount__isnull=True) | Q(amount__gte=0), name="interaction_amount_non_negative"),
            models.UniqueConstraint(fields=["external_id"], name="interaction_external_id_unique"),
            models.CheckConstraint(condition=~Q(external_id=""), name="interaction_external_id_not_empty"),
        ]

    def __str__(self):
        return f"{self.type} {self.customer_id} {self.occurred_at:%Y-%m-%d}"


class ImportRun(models.Model):
    """One import of up to three files: who, when, progress and the result of each file."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"  # every row loaded as given
        PARTIAL = "partial", "completed with rejected rows or warnings"
        FAILED = "failed"

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=20, default="command", help_text="command, upload, admin, api or seed.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    dry_run = models.BooleanField(
        default=False, help_text="Checked only: the counts say what an import would do; no data was written.")
    date_format = models.CharField(
        max_length=3, blank=True, help_text="iso, dmy (day first) or mdy (month first); empty: the source's, else iso.")
    source_name = models.CharField(
        max_length=100, blank=True, help_text="The upload source whose saved column mapping and date format it used.")
    mapping = models.JSONField(
        default=dict, blank=True, help_text='Column mapping asked for, per file: {"customers": {"Customer ID": '
                                            '"external_id"}}; the saved source\'s mapping fills in the rest.')
    stage = models.CharField(max_length=100, blank=True)
    rows_done = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When its task was handed to the broker (or it started in-process). Empty while queued: "
                  "the broker was unreachable, and the sweep or a starting worker sends it.")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Workers that started it (the import of a lost worker is taken over).")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Import #{self.pk} ({self.status})"

    @property
    def progress_percent(self):
        if self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL):
            return 100
        if not self.bytes_total:
            return 0
        return min(99, int(100 * self.bytes_done / self.bytes_total))

    @property
    def duration_seconds(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def outcome(self) -> str:
        """The run's status in words: "completed, 10 of 13 rows rejected", "dry run: ...", "failed".

        Reads ``files`` (prefetch them on list pages).
        """
        if self.status in (self.Status.QUEUED, self.Status.RUNNING):
            return f"dry run {self.status}" if self.dry_run else self.status
        if self.status == self.Status.FAILED:
            return "dry run failed" if self.dry_run else "failed"
        files = list(self.files.all())
        rows = sum(f.rows_read for f in files)
        rejected = sum(f.rejected for f in files)
        warned = sum(f.warned for f in files)
        rows_text = f"{rows:,} row{'s' if rows != 1 else ''}"
        if self.dry_run:
            if not rejected and not warned:
                return f"dry run: all {rows_text} would load"
            parts = [f"{rejected:,} of {rows_text} would be rejected"] if rejected else []
            parts += [f"{warned:,} would load with warnings"] if warned else []
            return "dry run: " + ", ".join(parts)
        if self.status == self.Status.SUCCEEDED:
            return f"succeeded, {rows_text}"
        parts = [f"{rejected:,} of {rows_text} rejected"] if rejected else [f"{warned:,} of {rows_text} with warnings"]
        if rejected and warned:
            parts.append(f"{warned:,} with warnings")
        return "completed, " + ", ".join(parts)

    @property
    def badge(self) -> str:
        """The CSS class of its status badge (a dry run is never shown as a success)."""
        if self.dry_run and self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL):
            return "dry-run"
        return self.status


class ImportSource(models.Model):
    """Where uploads come from ("Shop export", "Old CRM"): the column mapping and date format that
    its files need, saved by name so the next upload from it reads the same way."""

    name = models.CharField(max_length=100, unique=True)
    mapping = models.JSONField(default=dict, blank=True,
                               help_text='Per file: {"customers": {"Customer ID": "external_id"}, ...}.')
    date_format = models.CharField(max_length=3, default="iso")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ImportFile(models.Model):
    """The result of one file of an import."""

    class Kind(models.TextChoices):
        CUSTOMERS = "customers"
        PRODUCTS = "products"
        INTERACTIONS = "interactions"

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    filename = models.CharField(max_length=500)
    path = models.CharField(max_length=1000, blank=True)
    rejected_path = models.CharField(max_length=1000, blank=True)
    rows_read = models.BigIntegerField(default=0)
    created = models.BigIntegerField(default=0)
    updated = models.BigIntegerField(default=0)
    unchanged = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    warned = models.BigIntegerField(default=0, help_text="Rows loaded with a bad optional field skipped.")
    seconds = models.FloatField(default=0)
    encoding = models.CharField(max_length=40, blank=True, help_text="As detected, e.g. Windows-1252.")
    delimiter = models.CharField(max_length=10, blank=True, help_text="As detected: comma, semicolon, tab or pipe.")
    header = models.JSONField(default=list, blank=True, help_text="The file's column names.")
    column_mapping = models.JSONField(default=dict, blank=True, help_text="{file column: contract column} applied.")
    suggested_mapping = models.JSONField(default=dict, blank=True,
                                         help_text="{file column: contract column} proposed for other columns.")
    preview = models.JSONField(default=list, blank=True, help_text="The first rows as read, with their outcome.")
    error = models.TextField(blank=True, help_text="Why the file could not be imported at all.")

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "kind"], name="import_file_one_per_kind")]

    def __str__(self):
        return f"{self.kind}: {self.filename}"

    def in_file_order(self, mapping: dict) -> list:
        """A ``{file column: contract column}`` mapping as pairs in the file's column order (the JSON
        columns do not keep their order on PostgreSQL)."""
        return [(name, mapping[name]) for name in self.header if name in mapping]


class StoredFile(models.Model):
    """A file of an import kept where every machine of the deployment reads it: an uploaded CSV
    or a rejected-rows report, in the database (as chunks, StoredFileChunk) or in an object store
    (``backend``, IMPORT_STORAGE). Deleted IMPORT_FILE_RETENTION_DAYS after its import finished."""

    class Role(models.TextChoices):
        UPLOAD = "upload"
        REPORT = "report", "rejected rows and warnings"

    class Backend(models.TextChoices):
        DATABASE = "database"
        S3 = "s3"

    run = models.ForeignKey(ImportRun, on_delete=models.CASCADE, related_name="stored_files")
    kind = models.CharField(max_length=20, choices=ImportFile.Kind.choices)
    role = models.CharField(max_length=10, choices=Role.choices)
    name = models.CharField(max_length=500, help_text="The file's own name, as uploaded or as downloaded.")
    size = models.BigIntegerField(default=0, help_text="Bytes.")
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.DATABASE)
    key = models.CharField(max_length=500, blank=True, help_text="Its name in the object store (backend s3).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "role"], name="stored_file_one_per_role")]

    def __str__(self):
        return f"{self.role} {self.kind}: {self.name}"


class StoredFileChunk(models.Model):
    """A few MB of a StoredFile kept in the database, so no file is ever one value in memory."""

    file = models.ForeignKey(StoredFile, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["file", "number"], name="stored_file_chunk_number")]


class AuditEvent(models.Model):
    """One thing a user (or the system) did: the trail admins read. No personal data in it.

    Written by the services in the same transaction as the change (crm.audit.record). The
    actor's username is copied so the trail stays readable after the user is deleted; the
    object is named by type and id (not a foreign key) so the event outlives the object.
    """

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        BULK_UPSERT = "bulk_upsert"
        IMPORT = "import"
        EXPORT = "export"
        PERSONAL_DATA_EXPORT = "personal_data_export"
        ERASE = "erase"
        RETRAIN = "retrain"
        PUBLISH = "publish"
        ROLLBACK = "rollback"
        MERGE = "merge"
        REVOKE = "revoke"
        OTP_ENROL = "otp_enrol"
        OTP_DISABLE = "otp_disable"
        OTP_FAILURE = "otp_failure"
        OTP_RECOVERY_USED = "otp_recovery_used"
        OTP_RECOVERY_CODES = "otp_recovery_codes"
        COMPLETE = "complete"
        REASSIGN = "reassign"
        CANCEL = "cancel"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Empty for the system (commands, workers, schedules).")
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=30, choices=Action.choices)
    object_type = models.CharField(max_length=40, blank=True, help_text="customer, product, interaction, ...")
    object_id = models.CharField(max_length=100, blank=True)
    customer_id = models.BigIntegerField(null=True, blank=True,
                                         help_text="The customer the event is about (a number, not a link, so "
                                                   "the event outlives the customer's row).")
    summary = models.CharField(max_length=500, blank=True, help_text="Field names and counts, never values.")
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["action", "at"]),
            models.Index(fields=["customer_id", "at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_username or 'system'} {self.action} {self.object_type} " \
               f"{self.object_id}".strip()


class ApiToken(models.Model):
    """An API key of one user, limited by scope, customers and time (issue 18).

    Only the key's SHA-256 is stored (``key_hash``): a random secret of 256 bits needs no salt
    or slow hash, and a database copy holds nothing that opens the API. ``prefix``, the key's
    first characters, names a token on the pages without revealing it. Written by
    crm.tokens; read on every API request by crm.selectors.user_by_token (one query).
    """

    class Scope(models.TextChoices):
        READ_ONLY = "read-only", "Read-only"
        READ_WRITE = "read-write", "Read and write"

    PREFIX_LENGTH = 8

    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the script using it.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens",
                             verbose_name="owner")
    key_hash = models.CharField(max_length=64, unique=True, editable=False,
                                help_text="SHA-256 of the key, hex; the key itself is never stored.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False,
                              help_text="The key's first characters, to tell tokens apart.")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ_WRITE)
    own_customers_only = models.BooleanField(default=False, help_text="Limits the token to the customers its owner "
                                                                      "owns, even if their role sees more.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="Updated at most once a minute.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def is_active_at(self, at) -> bool:
        return self.revoked_at is None and self.expires_at > at


class FollowUp(models.Model):
    """A task on a customer: "call back Tuesday", "offer Gadget", "meeting on the 14th".

    A planned call or meeting is not an interaction (crm.clock): it is a follow-up, and completing
    it logs the interaction, dated when it happened (crm.followups.complete_followup). Made by
    hand, from a suggestion (``product`` + ``suggestion_kind``) or from a worklist (``reason``).
    Written by crm.followups only; who sees which: crm.access.visible_followups.
    """

    class Type(models.TextChoices):
        CALL = "call"
        EMAIL = "email"
        MEETING = "meeting"
        TODO = "todo", "To-do"

    class Status(models.TextChoices):
        OPEN = "open"
        DONE = "done"
        CANCELLED = "cancelled"

    class SuggestionKind(models.TextChoices):
        # The values of ml.models.Suggestion.Kind (crm does not import ml; a test keeps them equal).
        RECOMMENDATION = "recommendation", "Cross-sell"
        REORDER = "reorder"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="followups")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="followups",
                              db_index=False, help_text="Who does it (the customer's owner or the creator by default).")
    due_at = models.DateTimeField()
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.CALL)
    note = models.TextField(blank=True, max_length=limits.FOLLOWUP["note"])
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="The suggested product it was made from, if any.")
    suggestion_kind = models.CharField(max_length=20, choices=SuggestionKind.choices, blank=True)
    reason = models.CharField(max_length=limits.FOLLOWUP["reason"], blank=True,
                              help_text='The worklist reason it was made from, e.g. "high value at risk: churn 72 %".')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When it was done or cancelled.")
    completed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", db_index=False)
    interaction = models.ForeignKey(Interaction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                    help_text="The interaction completing it logged.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            # "My open follow-ups by due date" (home page, /follow-ups/, the API's owner=me): an index range.
            models.Index(fields=["owner", "status", "due_at"], name="followup_owner_status_due_idx"),
            # The team's view and crm.followups.due_between: open ones by due date, whoever owns them.
            models.Index(fields=["status", "due_at"], name="followup_status_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(type__in=["call", "email", "meeting", "todo"]),
                                   name="followup_type_allowed"),
            models.CheckConstraint(condition=Q(status__in=["open", "done", "cancelled"]),
                                   name="followup_status_allowed"),
            models.CheckConstraint(condition=Q(status="open", completed_at__isnull=True)
                                   | (~Q(status="open") & Q(completed_at__isnull=False)),
                                   name="followup_completed_at_iff_closed"),
        ]

    def __str__(self):
        return f"{self.get_type_display()} {self.customer_id} due {self.due_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


# Webhooks live in their own module (this one is near the size limit); importing them here makes them crm's models.
from crm.webhook_models import WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
