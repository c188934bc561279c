"""Request and response shapes. Thin: validation of shapes only; rules live in the services.

Insight names follow the contract (section 3): ``insights.segment.name``,
``insights.forecast.{as_of, horizon_days, expected_purchases, ...}``,
``insights.recommendations[].{sku, score, reason}``, ``insights.reorder[]``.
"""
import functools
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crm import limits, selectors
from crm import tags as crm_tags
from crm.interactions import BULK_FIELDS, MAX_BULK_ITEMS
from crm.models import INTERACTION_TYPES, ApiToken, Customer, Interaction, Product
from ml import customer_lists
from ml.models import Suggestion, SuggestionFeedback


def no_nul_characters(value):
    """PostgreSQL cannot store NUL in text or JSON: refuse it as a validation error, not a crash."""
    if "\\u0000" in json.dumps(value):
        raise serializers.ValidationError("must not contain NUL characters")


class JSONObjectField(serializers.JSONField):
    default_error_messages = {"not_object": "must be a JSON object"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        no_nul_characters(value)
        return value


extend_schema_field({"type": "object", "additionalProperties": True})(JSONObjectField)


class KeyField(serializers.SlugRelatedField):
    """A lookup by key (username, sku) where a key with NUL is simply not found: PostgreSQL refuses
    NUL in a text comparison, so the query would be a server error."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", "\\x00"))
        return super().to_internal_value(data)


# --- errors -------------------------------------------------------------------------------------

class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable: invalid, not_found, not_authenticated, "
                                           "permission_denied, conflict, throttled, ...")
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Validation messages per field (dotted for nested fields).")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- insights (contract section 3) --------------------------------------------------------------

class SegmentBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.IntegerField()
    name = serializers.CharField()
    profile = serializers.CharField()
    size = serializers.IntegerField()
    figures = JSONObjectField()
    run_id = serializers.IntegerField()


_NOT_FORECAST = ("null when this target is not forecast for the company's data (the forecast run's "
                 "`metrics.targets` says why)")


class ForecastSerializer(serializers.Serializer):
    as_of = serializers.DateField(allow_null=True, help_text="The forecast's reference date.")
    horizon_days = serializers.IntegerField(help_text="The forecast window (as_of, as_of + horizon_days].")
    expected_purchases = serializers.FloatField(help_text="Expected number of orders in the window.")
    expected_spend = serializers.FloatField(
        allow_null=True, help_text=f"Expected purchase amount in the window; {_NOT_FORECAST} (e.g. purchases "
                                   "without amounts).")
    churn_probability = serializers.FloatField(help_text="Probability of no purchase in the window, 0..1.")
    clv = serializers.FloatField(allow_null=True,
                                 help_text=f"Expected purchase amount in the next 365 days; {_NOT_FORECAST}.")
    expected_refund_rate = serializers.FloatField(
        allow_null=True, help_text=f"Expected refunded share of spend, 0..1; {_NOT_FORECAST}.")
    purchases_p10 = serializers.FloatField(allow_null=True, help_text="10th percentile of the expected orders.")
    purchases_p90 = serializers.FloatField(allow_null=True, help_text="90th percentile of the expected orders.")
    spend_p10 = serializers.FloatField(allow_null=True, help_text=f"10th percentile of the spend; {_NOT_FORECAST}.")
    spend_p90 = serializers.FloatField(allow_null=True, help_text=f"90th percentile of the spend; {_NOT_FORECAST}.")
    basis = serializers.CharField(help_text="What made this forecast: `model: <algorithm>` (chosen over the "
                                            "baselines on the backtest windows), `baseline: <name>` (no model "
                                            "beat the baseline, e.g. `baseline: naive rate`), or `not yet "
                                            "validated: <why>` (too little history to hold a window back).")
    factors = serializers.ListField(child=serializers.CharField())
    run_id = serializers.IntegerField()


class SuggestionSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    product_id = serializers.IntegerField()
    score = serializers.FloatField()
    reason = serializers.CharField()
    evidence = JSONObjectField()
    basis = serializers.CharField()
    rank = serializers.IntegerField()
    expected_on = serializers.DateField(
        required=False, allow_null=True,
        help_text="Reorder: the day the customer is expected to buy it again (last purchase + their typical "
                  "interval); listed once it is at most ML_REORDER_DUE_DAYS away or past. Null for cross-sell.")


class InsightsSerializer(serializers.Serializer):
    segment = SegmentBriefSerializer(allow_null=True)
    forecast = ForecastSerializer(allow_null=True)
    recommendations = SuggestionSerializer(many=True, help_text="Cross-sell, most likely first.")
    reorder = SuggestionSerializer(many=True, help_text="Replenishment that is due (expected within "
                                   "ML_REORDER_DUE_DAYS, or overdue): the overdue first, then by expected date.")
    computed_at = serializers.DictField(child=serializers.DateTimeField(allow_null=True),
                                        help_text="When each published model finished training, by kind.")
    no_profiling = serializers.BooleanField(help_text="The customer objected to profiling: no insights.")
    control_group = serializers.BooleanField(
        help_text="The customer is in the control group that measures the suggestions' uplift "
                  "(ML_CONTROL_SHARE): their suggestions are computed but withheld, so `recommendations` and "
                  "`reorder` are empty on purpose. Present when the suggestions were read.")


def _plain_value(field):
    """A converter giving what ``field.to_representation`` gives, for the plain field types the
    insights use, without DRF's per-field machinery."""
    if isinstance(field, serializers.Serializer):
        return _plain_serializer(type(field))
    if isinstance(field, serializers.ListSerializer):
        item = _plain_serializer(type(field.child))
        return lambda values: [item(v) for v in values]
    if isinstance(field, serializers.FloatField):
        return float
    if isinstance(field, serializers.IntegerField):
        return int
    if isinstance(field, serializers.BooleanField):
        return bool
    if isinstance(field, serializers.CharField):
        return str
    if isinstance(field, serializers.ListField | serializers.DictField | serializers.DateTimeField
                  | serializers.DateField | JSONObjectField):
        return field.to_representation
    raise TypeError(f"no plain converter for {type(field).__name__}")


def _plain_serializer(serializer_class):
    fields = [(name, _plain_value(field)) for name, field in serializer_class().fields.items()]

    def convert(data):
        return None if data is None else {
            name: None if data.get(name) is None else to_plain(data[name]) for name, to_plain in fields}
    return convert


@extend_schema_field(InsightsSerializer)
class InsightsField(serializers.Field):
    """InsightsSerializer's output for the dicts of ml.insights.insights_by_customer, built
    directly: the nested serializers cost more CPU than the database work of a detail request."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)
        self._convert = None

    def to_representation(self, value):
        if self._convert is None:
            self._convert = _plain_serializer(InsightsSerializer)
        return self._convert(value)


class RecommendationsSerializer(serializers.Serializer):
    recommendations = SuggestionSerializer(many=True)
    reorder = SuggestionSerializer(many=True)
    control_group = serializers.BooleanField(help_text="In the control group: both lists withheld (empty).")


# --- customers, products, interactions ------------------------------------------------------------

class TagNamesField(serializers.ListField):
    """A customer's tags as a list of names (alphabetical); written as a list of names, new ones
    creating tags. Left out of a write, the tags stay as they are."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=limits.TAG_NAME, validators=[no_nul_characters]),
                         max_length=limits.CUSTOMER_TAGS, **kwargs)

    def to_representation(self, data):
        if hasattr(data, "all"):  # the model's many-to-many manager
            data = [t.name for t in data.all()]
        return sorted(data, key=str.lower)

    def to_internal_value(self, data):
        try:
            return crm_tags.clean_names(super().to_internal_value(data))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class CustomerSerializer(serializers.ModelSerializer):
    owner = KeyField(slug_field="username", queryset=get_user_model().objects.all(), allow_null=True, required=False,
                     help_text="Username of the sales rep who owns the account.")
    attributes = JSONObjectField(required=False)
    tags = TagNamesField(required=False, help_text="Tag names; writing them sets the customer's tags (new names "
                                                   "create tags), leaving them out keeps the tags.")
    insights = InsightsField(help_text="The published models' insights (contract section 3).")

    class Meta:
        model = Customer
        fields = ("id", "external_id", "name", "email", "phone", "company", "country", "city", "signup_date",
                  "owner", "attributes", "no_profiling", "last_purchase_at", "created_at", "updated_at", "tags",
                  "insights")
        read_only_fields = ("last_purchase_at", "created_at", "updated_at")


@functools.cache
def _customer_converter():
    converters = []
    for name, field in CustomerSerializer().fields.items():
        if name == "owner":
            converters.append((name, str))  # the record carries the owner's username
        elif name == "insights":
            converters.append((name, _plain_serializer(InsightsSerializer)))
        else:
            converters.append((name, _plain_value(field)))
    return converters


def customer_representation(record: dict) -> dict:
    """CustomerSerializer's output for a record of ml.insights.customer_records, built without
    serializer instances (the customer detail and list are the API's hottest requests)."""
    return {name: None if record.get(name) is None else to_plain(record[name])
            for name, to_plain in _customer_converter()}


class CustomerQuerySerializer(serializers.Serializer):
    search = serializers.CharField(required=False, help_text="In name, e-mail, company; or an exact external_id.")
    segment = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                       help_text="A segment id of the published segmentation.")
    owner = serializers.RegexField(r"^(\d{1,18}|none)$", required=False,
                                   help_text="An owner's user id, or `none` for unassigned accounts.")
    churn_band = serializers.ChoiceField([k for k, *_ in customer_lists.CHURN_BANDS], required=False)
    clv_min = serializers.FloatField(required=False)
    clv_max = serializers.FloatField(required=False)
    last_purchase_before = serializers.DateTimeField(required=False)
    last_purchase_after = serializers.DateTimeField(required=False)
    tag = serializers.CharField(required=False, max_length=200, validators=[no_nul_characters],
                                help_text="Customers with this tag (its name, whatever the case).")
    ordering = serializers.ChoiceField(list(customer_lists.CUSTOMER_ORDERINGS), required=False, default="name")
    fields = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Comma-separated fields to return per customer (the others are left out), e.g. "
                  "`external_id,name,insights.segment`: a customer field, `insights` (all of them) or "
                  "`insights.<name>`. Suggestions are read only when `insights`, `insights.recommendations`, "
                  "`insights.reorder` or `insights.control_group` is asked for.")
    include = serializers.CharField(
        required=False, allow_blank=True, max_length=200,
        help_text="Comma-separated optional parts: `suggestions` (the default) puts `recommendations` and "
                  "`reorder` in `insights`; `include=` (empty) leaves them out and does not read them.")

    def validate_fields(self, value):
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in SPARSE_FIELDS]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown field {unknown[0]!r}; one of: {', '.join(SPARSE_FIELDS)}.")
        return names

    def validate_include(self, value):
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name != "suggestions"]
        if unknown:
            raise serializers.ValidationError(f"Unknown part {unknown[0]!r}; the only one is 'suggestions'.")
        return names

    def shape(self) -> tuple[list | None, bool]:
        """(the fields asked for, or None for all; whether the customers' suggestions are wanted)."""
        fields = self.validated_data.get("fields") or None
        suggestions = "suggestions" in self.validated_data.get("include", ["suggestions"]) and (
            fields is None or bool({"insights", *(f"insights.{name}" for name in _SUGGESTION_LISTS)} & set(fields)))
        return fields, suggestions

    def to_selector_kwargs(self) -> dict:
        data = dict(self.validated_data)
        data.pop("fields", None)
        data.pop("include", None)
        data["q"] = data.pop("search", "")
        return data


# What ``fields=`` may name: the customer's fields and each part of its insights.
SPARSE_FIELDS = (*CustomerSerializer.Meta.fields, *(f"insights.{name}" for name in InsightsSerializer().fields))
# What reading the suggestions gives (left out when they were not read).
_SUGGESTION_LISTS = ("recommendations", "reorder", "control_group")


def sparse_representation(data: dict, fields: list | None, suggestions: bool) -> dict:
    """A customer_representation with only ``fields`` (None: all) and, unless ``suggestions``, no
    suggestion lists (they were not read: an empty list would say the customer has none)."""
    insights = data.get("insights")
    if insights is not None and not suggestions:
        for name in _SUGGESTION_LISTS:
            insights.pop(name, None)
    if fields is None:
        return data
    out = {name: data[name] for name in fields if "." not in name and name in data}
    parts = [name.split(".", 1)[1] for name in fields if name.startswith("insights.")]
    if "insights" not in out and parts:
        out["insights"] = {name: insights[name] for name in parts if name in insights}
    return out


class CustomerListItemSerializer(serializers.Serializer):
    """A customer of the list: CustomerSerializer's fields, each present unless ``fields=`` or
    ``include=`` left it out (the schema says so: none is required)."""

    def get_fields(self):
        fields = CustomerSerializer().get_fields()
        for field in fields.values():
            field.read_only, field.required = False, False
        fields["insights"] = ListInsightsSerializer(required=False, allow_null=True,
                                                    help_text="The published models' insights (contract section 3).")
        return fields


class ListInsightsSerializer(InsightsSerializer):
    """InsightsSerializer's fields, each present unless ``fields=`` or ``include=`` left it out."""

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


class ProductSerializer(serializers.ModelSerializer):
    attributes = JSONObjectField(required=False)

    class Meta:
        model = Product
        fields = ("id", "sku", "name", "category", "price", "description", "tags", "active", "attributes",
                  "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        extra_kwargs = {"price": {"min_value": 0}}


class ProductQuerySerializer(serializers.Serializer):
    search = serializers.CharField(required=False, help_text="In name and description; or an exact sku.")
    category = serializers.CharField(required=False)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class InteractionSerializer(serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.none(),
                                                  help_text="The customer's id (one you can see).")
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)
    product = KeyField(slug_field="sku", queryset=Product.objects.all(), allow_null=True, required=False,
                       help_text="The product's sku.")
    external_id = serializers.CharField(max_length=limits.INTERACTION["external_id"], required=False, allow_blank=True,
                                        help_text="Unique key of the interaction; generated when left out.")
    occurred_at = serializers.DateTimeField(required=False, help_text="Default: now.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Interaction
        fields = ("id", "external_id", "customer", "customer_external_id", "type", "occurred_at", "product",
                  "quantity", "amount", "order_ref", "channel", "notes", "attributes", "created_by", "created_at")
        read_only_fields = ("attributes", "created_at")
        extra_kwargs = {"quantity": {"min_value": 0, "max_value": 2**31 - 1}, "amount": {"min_value": 0}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["customer"].queryset = selectors.visible_customers(request.user)
        if self.instance is not None and not isinstance(self.instance, list):
            self.fields["customer"].read_only = True
            self.fields["external_id"].read_only = True


class InteractionQuerySerializer(serializers.Serializer):
    customer = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    customer_external_id = serializers.CharField(required=False, max_length=limits.CUSTOMER["external_id"])
    type = serializers.ChoiceField(INTERACTION_TYPES, required=False)
    product_sku = serializers.CharField(required=False, max_length=limits.PRODUCT["sku"])
    occurred_after = serializers.DateTimeField(required=False)
    occurred_before = serializers.DateTimeField(required=False)
    ordering = serializers.ChoiceField(list(selectors.INTERACTION_ORDERINGS), required=False, default="-occurred_at")


class BulkInteractionItemSerializer(serializers.Serializer):
    """One item of a bulk request: the interactions.csv columns (contract section 1). Documentation
    only: items are validated one by one like import rows, so one bad item does not fail the rest."""

    customer_external_id = serializers.CharField()
    type = serializers.ChoiceField(INTERACTION_TYPES)
    occurred_at = serializers.CharField(help_text="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][±HH:MM].")
    product_sku = serializers.CharField(required=False, allow_blank=True)
    quantity = serializers.IntegerField(required=False, min_value=0)
    amount = serializers.DecimalField(required=False, max_digits=14, decimal_places=2, min_value=0,
                                      coerce_to_string=True)
    order_ref = serializers.CharField(required=False, allow_blank=True)
    external_id = serializers.CharField(required=False, allow_blank=True,
                                        help_text="Makes re-sending idempotent; derived from the content if absent.")
    channel = serializers.CharField(required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True)
    attributes = JSONObjectField(required=False)


# An import-time consistency check of our own declarations (bandit: not input validation).
assert set(BulkInteractionItemSerializer._declared_fields) == {*BULK_FIELDS, "attributes"}  # nosec B101


@extend_schema_field(BulkInteractionItemSerializer(many=True))
class BulkItemsField(serializers.ListField):
    """Items stay raw here: the service validates each one and reports it by index."""

    child = serializers.JSONField()


class BulkInteractionRequestSerializer(serializers.Serializer):
    items = BulkItemsField(max_length=MAX_BULK_ITEMS, help_text=f"Up to {MAX_BULK_ITEMS:,} interactions.")


def bulk_body(data):
    """A bulk request's body as ``{"items": [...]}``: a bare JSON list is taken as the items."""
    return {"items": data} if isinstance(data, list) else data


class BulkItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the item in the request, from 0.")
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class BulkInteractionResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = BulkItemErrorSerializer(many=True)


class FeedbackSerializer(serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.none())
    sku = KeyField(source="product", slug_field="sku", queryset=Product.objects.all())
    kind = serializers.ChoiceField(Suggestion.Kind.values)
    status = serializers.ChoiceField(SuggestionFeedback.Status.values)

    class Meta:
        model = SuggestionFeedback
        fields = ("id", "customer", "sku", "kind", "status", "run", "updated_at")
        read_only_fields = ("id", "run", "updated_at")
        validators = []  # feedback is an upsert: repeating it changes the status

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["customer"].queryset = selectors.visible_customers(request.user)


class TokenRequestSerializer(serializers.Serializer):
    """POST /auth/token/: who you are, and what the new token may do. JSON or form data."""

    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    otp = serializers.CharField(required=False, allow_blank=True, max_length=20,
                                help_text="A current authenticator code, or a recovery code (accounts with a second factor).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                 help_text="What the token is for; default \"token of\" and today's date.")
    scope = serializers.ChoiceField(ApiToken.Scope.values, default=ApiToken.Scope.READ_WRITE,
                                    help_text="`read-only`: every unsafe method is refused (403).")
    own_customers_only = serializers.BooleanField(
        default=False, help_text="Only the customers you own, even if your role sees more.")
    expires_in_days = serializers.IntegerField(required=False, min_value=1,
                                               help_text="Default API_TOKEN_DAYS (90), at most API_TOKEN_MAX_DAYS (365).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].max_value = settings.API_TOKEN_MAX_DAYS  # for the schema: the setting now

    def validate_expires_in_days(self, value):
        if value > settings.API_TOKEN_MAX_DAYS:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {settings.API_TOKEN_MAX_DAYS} "
                                              "(API_TOKEN_MAX_DAYS).")
        return value


class TokenSerializer(serializers.ModelSerializer):
    """A new token: the key (`token`) is in this answer only; it is stored as a hash."""

    token = serializers.CharField(read_only=True, help_text="Send it as `Authorization: Token <token>`.")

    class Meta:
        model = ApiToken
        fields = ("token", "id", "name", "scope", "own_customers_only", "created_at", "expires_at")
        read_only_fields = fields


# --- privacy (documentation of the responses; the services build them) -----------------------------------

class PersonalDataSerializer(serializers.Serializer):
    """Everything stored about one customer (crm.privacy.personal_data)."""

    format = serializers.CharField()
    generated_at = serializers.DateTimeField()
    customer = serializers.DictField(help_text="The profile: every stored field.")
    interactions = serializers.ListField(child=serializers.DictField())
    segments = serializers.ListField(child=serializers.DictField(), help_text="One per stored segmentation run.")
    forecasts = serializers.ListField(child=serializers.DictField(), help_text="One per stored forecast run, "
                                                                               "with its factors; a null value "
                                                                               "was not forecast, and "
                                                                               "`not_forecast` says why.")
    suggestions = serializers.ListField(child=serializers.DictField(), help_text="With reasons, every stored run.")
    prospects = serializers.ListField(child=serializers.DictField())
    suggestion_feedback = serializers.ListField(child=serializers.DictField())
    audit_events = serializers.ListField(child=serializers.DictField())


class ErasureResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    erased_at = serializers.DateTimeField()
    deleted = serializers.DictField(child=serializers.IntegerField(), help_text="Rows deleted, by kind.")


class MergeRequestSerializer(serializers.Serializer):
    duplicates = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
                                       min_length=1, max_length=100,
                                       help_text="Ids of the customers to merge into this one (then deleted).")


class MergeResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The kept customer.")
    merged = serializers.ListField(child=serializers.IntegerField(), help_text="The ids merged into it and deleted.")
    moved = serializers.DictField(child=serializers.IntegerField(), help_text="Rows moved or dropped, by kind.")
