"""POST /api/v1/customers/bulk/: create or update many customers keyed on `external_id`, the
customers' twin of /interactions/bulk/ (same body forms, same answer). Rules and writes:
crm.customer_upsert."""
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import limits, services
from crm.customer_upsert import BULK_CUSTOMER_FIELDS
from crm.interactions import MAX_BULK_ITEMS
from web.api import serializers as s


class BulkCustomerItemSerializer(serializers.Serializer):
    """One item: the customer API's writable fields. Documentation only: items are validated one
    by one (crm.customer_upsert), so one bad item does not fail the rest. A known `external_id`
    changes only the fields the item gives."""

    external_id = serializers.CharField(max_length=limits.CUSTOMER["external_id"],
                                        help_text="The customer's key: new ones are created, known ones updated.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=limits.CUSTOMER["name"])
    email = serializers.EmailField(required=False, allow_blank=True, max_length=limits.CUSTOMER["email"])
    phone = serializers.CharField(required=False, allow_blank=True, max_length=limits.CUSTOMER["phone"])
    company = serializers.CharField(required=False, allow_blank=True, max_length=limits.CUSTOMER["company"])
    country = serializers.CharField(required=False, allow_blank=True, max_length=limits.CUSTOMER["country"])
    city = serializers.CharField(required=False, allow_blank=True, max_length=limits.CUSTOMER["city"])
    signup_date = serializers.DateField(required=False, allow_null=True)
    owner = serializers.CharField(required=False, allow_null=True, max_length=limits.USERNAME,
                                  help_text="Username of the sales rep who owns the account; null: unassigned. "
                                            "A sales rep may give only themselves or nobody.")
    attributes = s.JSONObjectField(required=False)
    no_profiling = serializers.BooleanField(required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=limits.TAG_NAME), required=False,
                                 max_length=limits.CUSTOMER_TAGS,
                                 help_text="The customer's tag names from now on (new names create tags).")


# An import-time consistency check of our own declarations (bandit: not input validation).
assert set(BulkCustomerItemSerializer._declared_fields) == set(BULK_CUSTOMER_FIELDS)  # nosec B101


@extend_schema_field(BulkCustomerItemSerializer(many=True))
class BulkCustomerItemsField(serializers.ListField):
    """Items stay raw here: the service validates each one and reports it by index."""

    child = serializers.JSONField()


class BulkCustomerRequestSerializer(serializers.Serializer):
    items = BulkCustomerItemsField(max_length=MAX_BULK_ITEMS, help_text=f"Up to {MAX_BULK_ITEMS:,} customers.")


class BulkCustomerResultSerializer(s.BulkInteractionResultSerializer):
    """Counts of the request's customers, and each refused item's errors (one per bad field)."""

    rejected = serializers.IntegerField(help_text="Items refused (an item may have several errors).")


def bulk_body(data):
    """The body as ``{"items": [...]}`` (the key of /interactions/bulk/): a bare JSON list is taken as the items."""
    return {"items": data} if isinstance(data, list) else data


class CustomerBulkView(APIView):
    """Create or update many customers in one request, keyed on `external_id`."""

    @extend_schema(
        summary="Create or update many customers", request=BulkCustomerRequestSerializer,
        responses={200: BulkCustomerResultSerializer, 409: s.ErrorSerializer},
        examples=[
            OpenApiExample("A new customer, a change, a bad item", request_only=True, value={"items": [
                {"external_id": "C-900001", "name": "Acme GmbH", "email": "buyer@acme.example", "owner": "rep1"},
                {"external_id": "C-001042", "city": "Hamburg", "tags": ["vip"]},
                {"external_id": "C-900002", "email": "not an address"}]}),
            OpenApiExample("Result", response_only=True, value={
                "created": 1, "updated": 1, "unchanged": 0, "rejected": 1,
                "errors": [{"index": 2, "field": "email", "message": "Enter a valid email address."}]}),
        ])
    def post(self, request):
        """Create or update up to 10,000 customers keyed on `external_id`: a new key creates the customer,
        a known one changes only the fields its item gives (`owner` by username, `tags` by name). Each bad
        item is reported with its index, field and reason: invalid values, an unknown owner, a key repeated
        in the request, a customer you cannot see (another rep's), or an owner you may not give (a sales rep:
        only themselves or nobody). The good ones are written in one transaction, each audited as a single
        create or update is; unchanged ones are not written. The body is `{"items": [...]}` or the bare
        list of customers. 409 when another request wrote one of the same customers meanwhile (nothing
        written: send it again)."""
        serializer = BulkCustomerRequestSerializer(data=bulk_body(request.data))
        serializer.is_valid(raise_exception=True)
        result = services.upsert_customers(user=request.user, items=serializer.validated_data["items"])
        return Response(BulkCustomerResultSerializer({
            "created": result.created, "updated": result.updated, "unchanged": result.unchanged,
            "rejected": len({e["index"] for e in result.errors}), "errors": result.errors}).data)
