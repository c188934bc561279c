"""REST API views: thin doors to the selectors and services the web pages use.

Row-level rule: every customer, interaction and suggestion is looked up among the ones the
user may see (crm.selectors.visible_customers), so another rep's customer is a 404, exactly
as if it did not exist. Role rules: permission classes (web.api.permissions) and the services.
"""
from django.contrib.auth import authenticate
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from crm import keyset, privacy, second_factor, selectors, services
from crm.models import ApiToken, Customer, Product
from ml import customer_lists, run_reports
from ml import insights as ml_insights
from ml import selectors as ml_selectors
from ml import services as ml_services
from ml.models import Segment
from web.api import import_serializers, ml_serializers
from web.api import serializers as s
from web.api.exceptions import LockedOut
from web.api.permissions import HasCrmRole, IsManager, ManagerOfAllCustomers, ManagerWritesOnly

INSIGHTS_EXAMPLE = {
    "segment": {"id": 12, "key": 2, "name": "Loyal regulars", "profile": "Buy every few weeks, mid-size baskets.",
                "size": 1840, "figures": {"recency_days": 21.0}, "run_id": 7},
    "forecast": {"as_of": "2025-06-30", "horizon_days": 90, "expected_purchases": 2.4, "expected_spend": 311.5,
                 "churn_probability": 0.18, "clv": 1204.0, "expected_refund_rate": 0.02, "purchases_p10": 1.0,
                 "purchases_p90": 4.0, "spend_p10": 90.0, "spend_p90": 620.0, "basis": "model: ensemble",
                 "factors": ["bought 9 times in the last year"], "run_id": 8},
    "recommendations": [{"sku": "DOG-FOOD-12", "name": "Grain-free dog food 12 kg", "product_id": 31, "score": 0.41,
                         "reason": "bought by 38 % of customers who buy what you buy", "evidence": {},
                         "basis": "item-item", "rank": 1}],
    "reorder": [],
    "computed_at": {"segmentation": "2025-07-01T02:31:12Z", "forecast": "2025-07-01T02:33:40Z"},
    "no_profiling": False,
}
CUSTOMER_EXAMPLE = OpenApiExample("A customer with insights", response_only=True, value={
    "id": 1042, "external_id": "C-001042", "name": "Jane Doe", "email": "jane@example.com", "phone": "",
    "company": "", "country": "DE", "city": "Berlin", "signup_date": "2023-04-02", "owner": "rep1",
    "attributes": {}, "no_profiling": False, "last_purchase_at": "2025-06-12T10:14:00Z",
    "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-07-01T02:33:40Z", "insights": INSIGHTS_EXAMPLE})


class _LookupMixin:
    def get_object(self):
        value = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
        if "\x00" in str(value):  # PostgreSQL refuses NUL in a text comparison: nothing can match it
            raise exceptions.NotFound()
        return super().get_object()


def _query(serializer_class, request):
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query


def _body(serializer_class, request) -> dict:
    body = serializer_class(data=request.data)
    body.is_valid(raise_exception=True)
    return body.validated_data


# --- customers -------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="List customers", parameters=[s.CustomerQuerySerializer],
                       responses=s.CustomerListItemSerializer(many=True)),
    retrieve=extend_schema(summary="A customer with insights", examples=[CUSTOMER_EXAMPLE]),
    create=extend_schema(summary="Create a customer", examples=[OpenApiExample(
        "New account", request_only=True, value={"external_id": "C-900001", "name": "Acme GmbH",
                                                 "email": "buyer@acme.example", "owner": "rep1"})]),
    update=extend_schema(summary="Replace a customer's fields"),
    partial_update=extend_schema(summary="Change some of a customer's fields"),
    destroy=extend_schema(summary="Delete a customer (managers)"),
)
class CustomerViewSet(_LookupMixin, viewsets.GenericViewSet):
    """Customers the user may see: sales reps their own and unassigned accounts, managers and admins
    all. Each carries the published models' insights under `insights` (contract section 3).
    Address one by `id` (`/customers/{id}/`) or by `external_id` (`/customers/by-external-id/{external_id}/`)."""

    serializer_class = s.CustomerSerializer
    queryset = Customer.objects.none()  # names the model for the schema without a database query
    lookup_value_regex = r"[0-9]+"
    keyset_pagination = True  # the list takes ?cursor= (web.api.pagination.Pagination.paginate_keyset)

    def get_queryset(self):
        # Segment and forecast rows come in the customers' own query (fewer round trips per request).
        self.insight_runs = ml_insights.insight_runs()
        return ml_insights.with_published_rows(
            selectors.visible_customers(self.request.user).select_related("owner"), self.insight_runs)

    def _data(self, customers, *, many=False):
        """Serialized customers, each with ``insights`` read for all of them at once (no N+1)."""
        batch = customers if many else [customers]
        insights = ml_insights.insights_by_customer(batch, getattr(self, "insight_runs", None))
        for customer in batch:
            customer.insights = insights[customer.pk]
        return self.get_serializer(customers, many=many).data

    def list(self, request):
        """Customers, searched, filtered and sorted like the customer list page, each with insights; `next` /
        `previous` are cursor links (keyset pages); `fields=` / `include=` leave out what a client does not need."""
        query = _query(s.CustomerQuerySerializer, request)
        fields, suggestions = query.shape()
        insight_runs = ml_insights.insight_runs()
        runs = {kind: run.pk for kind, run in insight_runs.items()}
        filters = query.to_selector_kwargs()
        # The page's ids and the count from the indexes (customer_list_page), then only those
        # customers with the same runs' insights (customer_records: one query on PostgreSQL).
        ids = self.paginator.paginate_keyset(
            lambda **where: customer_lists.customer_list_page(request.user, runs=runs, **where, **filters),
            request, filters["ordering"], "customers", customer_lists.sort_key_lengths(filters["ordering"]))
        records = ml_insights.customer_records(request.user, ids=ids, runs=insight_runs, suggestions=suggestions)
        return self.get_paginated_response([
            s.sparse_representation(s.customer_representation(r), fields, suggestions) for r in records])

    def retrieve(self, request, **kwargs):
        """One customer with segment, forecast, recommendations and reorder suggestions."""
        # The hottest request of the API: token, user and roles in one query (web.api.authentication),
        # then the customer with its insights in one more (customer_records; two on SQLite).
        value = str(self.kwargs[self.lookup_url_kwarg or self.lookup_field])
        key = {"external_id": value} if self.lookup_field == "external_id" else {"pk": value}
        records = ml_insights.customer_records(request.user, **key)
        if not records:
            raise exceptions.NotFound("No Customer matches the given query.")
        return Response(s.customer_representation(records[0]))

    def create(self, request):
        """Create a customer. A sales rep may own it or leave it unassigned (owner: null)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.create_customer(user=request.user, **serializer.validated_data)
        return Response(self._data(customer), status=status.HTTP_201_CREATED)

    def update(self, request, partial=False, **kwargs):
        """Change a customer; a sales rep cannot hand an account to another rep."""
        customer = self.get_object()
        serializer = self.get_serializer(customer, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        customer = services.update_customer(user=request.user, customer=customer, **serializer.validated_data)
        return Response(self._data(customer))

    def partial_update(self, request, **kwargs):
        return self.update(request, partial=True, **kwargs)

    def destroy(self, request, **kwargs):
        """Delete a customer with their interactions and insights (managers and admins only)."""
        services.delete_customer(user=request.user, customer=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="A customer's product suggestions", responses=s.RecommendationsSerializer)
    @action(detail=True, methods=["get"])
    def recommendations(self, request, **kwargs):
        """Cross-sell (`recommendations`) and replenishment (`reorder`) suggestions, most likely first."""
        customer = self.get_object()
        insights = ml_insights.insights_by_customer([customer], self.insight_runs)[customer.pk]
        return Response(s.RecommendationsSerializer(insights).data)


class CustomerByExternalIdViewSet(CustomerViewSet):
    """The same customer resource, addressed by its `external_id` (the key in the source system)."""

    lookup_field = "external_id"
    lookup_value_regex = r"[^/]+"


# --- products ------------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="List products", parameters=[s.ProductQuerySerializer]),
    retrieve=extend_schema(summary="A product"),
    create=extend_schema(summary="Create a product (managers)"),
    update=extend_schema(summary="Replace a product's fields (managers)"),
    partial_update=extend_schema(summary="Change some of a product's fields (managers)"),
    destroy=extend_schema(summary="Delete a product without interactions (managers)"),
)
class ProductViewSet(_LookupMixin, viewsets.GenericViewSet):
    """The catalogue, addressed by `sku` (`/products/{sku}/`; a sku containing `/` cannot be addressed).
    Everyone with a role reads; managers and admins write."""

    serializer_class = s.ProductSerializer
    permission_classes = [ManagerWritesOnly]
    keyset_pagination = True  # the list takes ?cursor= (web.api.pagination.Pagination.paginate_keyset)
    lookup_field = "sku"
    lookup_value_regex = r"[^/]+"

    def get_queryset(self):
        return Product.objects.all()

    def list(self, request):
        """Products, searched (name, description, exact sku) and filtered by category and active flag."""
        query = _query(s.ProductQuerySerializer, request)
        data = query.validated_data
        products = selectors.product_list(q=data.get("search", ""), category=data.get("category", ""),
                                          active=data.get("active"))
        page = self.paginator.paginate_queryset_keyset(products, keyset.terms_of(selectors.PRODUCT_ORDERING), request,
                                                       "name", "products")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = services.create_product(user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(product).data, status=status.HTTP_201_CREATED)

    def update(self, request, partial=False, **kwargs):
        product = self.get_object()
        serializer = self.get_serializer(product, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        product = services.update_product(user=request.user, product=product, **serializer.validated_data)
        return Response(self.get_serializer(product).data)

    def partial_update(self, request, **kwargs):
        return self.update(request, partial=True, **kwargs)

    def destroy(self, request, **kwargs):
        """Delete a product; one with interactions is refused with 409 (mark it inactive instead)."""
        services.delete_product(user=request.user, product=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Products similar to this one", responses=ml_serializers.SimilarProductSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # a plain list, as documented
    def similar(self, request, **kwargs):
        """Up to 10 products bought with or like this one, from the published recommendation model."""
        return Response(ml_serializers.SimilarProductSerializer(ml_selectors.similar_products(self.get_object()), many=True).data)

    @extend_schema(summary="Customers worth pitching this product to", responses=ml_serializers.ProspectSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # a plain list, as documented
    def prospects(self, request, **kwargs):
        """Up to 20 of the customers you may see, most likely buyers first."""
        rows = ml_selectors.visible_prospects(request.user, self.get_object())
        return Response(ml_serializers.ProspectSerializer(rows, many=True).data)


# --- interactions ----------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="List interactions", parameters=[s.InteractionQuerySerializer]),
    retrieve=extend_schema(summary="An interaction"),
    create=extend_schema(summary="Log an interaction", examples=[OpenApiExample(
        "A call", request_only=True, value={"customer": 1042, "type": "call", "notes": "asked for a quote",
                                            "channel": "phone"})]),
    update=extend_schema(summary="Replace an interaction's fields"),
    partial_update=extend_schema(summary="Change some of an interaction's fields"),
    destroy=extend_schema(summary="Delete an interaction"),
)
class InteractionViewSet(_LookupMixin, viewsets.GenericViewSet):
    """Purchases, refunds, views, e-mails, calls, meetings, support cases and notes of the customers
    the user may see. By `id` (`/interactions/{id}/`) or `external_id`
    (`/interactions/by-external-id/{external_id}/`). Sales reps change only what they logged."""

    serializer_class = s.InteractionSerializer
    lookup_value_regex = r"[0-9]+"
    keyset_pagination = True  # the list takes ?cursor= (web.api.pagination.Pagination.paginate_keyset)

    def get_queryset(self):
        return selectors.visible_interactions(self.request.user).select_related("customer", "product", "created_by")

    def list(self, request):
        """Newest first by default; filter by customer, type, product and time."""
        query = _query(s.InteractionQuerySerializer, request)
        ordering = query.validated_data["ordering"]
        page = self.paginator.paginate_queryset_keyset(
            selectors.interaction_list(request.user, **query.validated_data),
            keyset.terms_of(selectors.INTERACTION_ORDERINGS[ordering]), request, ordering, "interactions")
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request):
        """Log one interaction on a customer you may see (occurred_at defaults to now)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        interaction = services.log_interaction(user=request.user, **serializer.validated_data)
        return Response(self.get_serializer(interaction).data, status=status.HTTP_201_CREATED)

    def update(self, request, partial=False, **kwargs):
        interaction = self.get_object()
        serializer = self.get_serializer(interaction, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        interaction = services.update_interaction(user=request.user, interaction=interaction,
                                                  **serializer.validated_data)
        return Response(self.get_serializer(interaction).data)

    def partial_update(self, request, **kwargs):
        return self.update(request, partial=True, **kwargs)

    def destroy(self, request, **kwargs):
        services.delete_interaction(user=request.user, interaction=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Create or update many interactions", request=s.BulkInteractionRequestSerializer,
        responses={200: s.BulkInteractionResultSerializer},
        examples=[
            OpenApiExample("Two items, one bad", request_only=True, value={"items": [
                {"external_id": "shop-881", "customer_external_id": "C-001042", "type": "purchase",
                 "occurred_at": "2025-06-30T14:05:00+02:00", "product_sku": "DOG-FOOD-12", "quantity": 1,
                 "amount": "54.90", "order_ref": "A-7781"},
                {"customer_external_id": "C-001042", "type": "visit", "occurred_at": "2025-06-30"}]}),
            OpenApiExample("Result", response_only=True, value={
                "created": 1, "updated": 0, "unchanged": 0, "rejected": 1,
                "errors": [{"index": 1, "field": "type", "message": "type 'visit' is not one of call, email, "
                            "meeting, note, purchase, refund, support, view"}]}),
        ])
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Create or update up to 10,000 interactions keyed on `external_id` (the interactions.csv
        columns). Each bad item is reported with its index and reason; the good ones are stored.
        Sending the same items again changes nothing (items without `external_id` get a key derived
        from their content). The body is `{"items": [...]}` or the bare list of items."""
        serializer = s.BulkInteractionRequestSerializer(data=s.bulk_body(request.data))
        serializer.is_valid(raise_exception=True)
        result = services.upsert_interactions(user=request.user, items=serializer.validated_data["items"])
        return Response(s.BulkInteractionResultSerializer({
            "created": result.created, "updated": result.updated, "unchanged": result.unchanged,
            "rejected": len(result.errors), "errors": result.errors}).data)


class InteractionByExternalIdViewSet(InteractionViewSet):
    """The same interaction resource, addressed by its `external_id`."""

    lookup_field = "external_id"
    lookup_value_regex = r"[^/]+"


# --- segments and training runs -----------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="Segments with profiles and sizes", parameters=[ml_serializers.SegmentQuerySerializer]),
    retrieve=extend_schema(summary="A segment"),
)
class SegmentViewSet(viewsets.ReadOnlyModelViewSet):
    """Customer segments of the published segmentation (or of an earlier run), largest first."""

    serializer_class = ml_serializers.SegmentSerializer
    pagination_class = None
    queryset = Segment.objects.none()  # names the model for the schema without a database query

    def get_queryset(self):
        if self.action == "retrieve":
            return Segment.objects.all()
        return ml_selectors.segments_of_run(_query(ml_serializers.SegmentQuerySerializer, self.request).validated_data.get("run"))


@extend_schema_view(
    list=extend_schema(summary="Training runs", parameters=[ml_serializers.TrainingRunQuerySerializer]),
    retrieve=extend_schema(summary="A training run with metrics and progress"),
)
class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Trainings of the segmentation, forecast and recommendation models: status, progress, and
    what each run published and why (`metrics.outcome`: model, baseline or not yet validated, in
    one line; `metrics.backtest`: the rolling-origin windows and each target's choice;
    `metrics.targets` for forecasts: which targets were forecast, and why not). A run the data
    cannot support is `skipped` with its reason in `error`. Managers and admins start retrains and
    publish (roll back to) earlier runs."""

    serializer_class = ml_serializers.TrainingRunSerializer

    def get_permissions(self):
        return [IsManager()] if self.action in ("create", "publish") else [HasCrmRole()]

    def get_queryset(self):
        if self.action == "list":
            query = _query(ml_serializers.TrainingRunQuerySerializer, self.request)
            return run_reports.training_runs(**query.validated_data)
        return run_reports.training_runs()

    @extend_schema(summary="Start a retrain (managers)", request=ml_serializers.RetrainRequestSerializer,
                   responses={202: ml_serializers.RetrainResponseSerializer, 409: s.ErrorSerializer},
                   examples=[OpenApiExample("Forecast 90 days ahead", request_only=True,
                                            value={"kind": "forecast", "horizon_days": 90})])
    def create(self, request):
        """Queue a retrain of one kind of model; 202 with the run (a request made while one is queued
        joins it: `created` is false). Poll the run for progress."""
        serializer = ml_serializers.RetrainRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run, created = ml_services.request_retrain(**serializer.validated_data, user=request.user, trigger="api")
        return Response(ml_serializers.RetrainResponseSerializer({"created": created, "run": run}).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Publish (or roll back to) this run (managers)", request=None,
                   responses={200: ml_serializers.TrainingRunSerializer, 409: s.ErrorSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        """Make this succeeded run the live one of its kind, in one transaction; the previous one stays
        for rollback. 409 when the run did not succeed."""
        run = ml_services.publish_run(self.get_object().pk, user=request.user)
        return Response(ml_serializers.TrainingRunSerializer(run).data)


# --- imports -------------------------------------------------------------------------------------------------

@extend_schema_view(
    list=extend_schema(summary="Imports (managers)"),
    retrieve=extend_schema(summary="An import's status, counts and rejected rows (managers)"),
)
class ImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CSV imports (contract section 1, or as spreadsheets export them), run by a worker. Managers and admins only."""

    serializer_class = import_serializers.ImportRunSerializer
    permission_classes = [ManagerOfAllCustomers]  # an import may change any customer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.import_runs()

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "with_rejected_rows": self.action == "retrieve"}

    @extend_schema(summary="Upload CSV files to import, or to check first (managers)", request={
        "multipart/form-data": import_serializers.ImportUploadSerializer}, responses={202: import_serializers.ImportRunSerializer})
    def create(self, request):
        """Upload customers.csv, products.csv and/or interactions.csv; 202 with the import's id. A worker
        imports them (or only checks them, with ``dry_run``); GET the import for its detected format, column
        mapping, first rows, counts and rejected rows."""
        serializer = import_serializers.ImportUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        uploads = {k: data[k] for k in ("customers", "products", "interactions") if data.get(k)}
        run = services.enqueue_import(uploads, user=request.user, source="api", dry_run=data["dry_run"],
                                      date_format=data["date_format"], source_name=data["source_name"].strip(),
                                      mapping=data["mapping"])
        run = selectors.import_runs().get(pk=run.pk)
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Import the files a dry run checked (managers)", request=import_serializers.ImportConfirmSerializer,
                   responses={202: import_serializers.ImportRunSerializer})
    @action(detail=True, methods=["post"], url_path="import", parser_classes=[JSONParser, MultiPartParser])
    def import_checked(self, request, pk=None):
        """Queue the import of a dry run's files (a copy: the dry run keeps its record), with its mapping, date
        format and source unless the request gives others; ``dry_run``: check them again instead."""
        checked = self.get_object()
        if not checked.dry_run:
            raise exceptions.ValidationError("only the files of a dry run can be imported this way")
        serializer = import_serializers.ImportConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run = services.enqueue_checked(checked.pk, user=request.user, source="api", dry_run=data["dry_run"],
                                       mapping=data.get("mapping"), date_format=data.get("date_format"),
                                       source_name=data.get("source_name"))
        run = selectors.import_runs().get(pk=run.pk)
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)


# --- suggestion feedback and tokens --------------------------------------------------------------------

class FeedbackView(APIView):
    """What a salesperson did with a suggestion: offered, accepted or declined."""

    @extend_schema(summary="Mark a suggestion offered / accepted / declined", request=s.FeedbackSerializer,
                   responses={200: s.FeedbackSerializer},
                   examples=[OpenApiExample("Accepted", request_only=True, value={
                       "customer": 1042, "sku": "DOG-FOOD-12", "kind": "recommendation", "status": "accepted"})])
    def post(self, request):
        """Record the current status of one suggestion (customer, product, kind); repeating it
        updates the status."""
        serializer = s.FeedbackSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        feedback = ml_services.record_feedback(user=request.user, customer=data["customer"], product=data["product"],
                                               kind=data["kind"], status=data["status"])
        return Response(s.FeedbackSerializer(feedback).data)


def sign_in(request, username: str, password: str, otp: str = ""):
    """The user these credentials belong to, or the API's refusal (401; 429 once locked out; 400
    naming `otp` when the account's second factor is missing or wrong).

    The one place POST /auth/token/ authenticates a person before a token is issued: a further
    check of who they are belongs here, before the return.
    """
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):  # django-axes flags the try that hit the limit
        raise LockedOut()
    if user is None or not user.is_active:
        raise exceptions.AuthenticationFailed("Unable to sign in with the given username and password.")
    second_factor.check_api_sign_in(user, otp)
    return user


class TokenView(APIView):
    """API tokens. Send one as `Authorization: Token <key>`. Each acts as its owner, limited by its
    scope (`read-only` or `read-write`), optionally to the customers the owner owns, until it
    expires or is revoked. List and revoke yours on the account page; admins manage all in the admin."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(summary="Create an API token", request=s.TokenRequestSerializer,
                   responses={201: s.TokenSerializer})
    def post(self, request):
        """A new token for `username` and `password` (JSON or form data), and `otp` (a current authenticator
        code or a recovery code) if the account has a second factor. Its key is in this answer only: the
        CRM stores its hash."""
        data = _body(s.TokenRequestSerializer, request)
        user = sign_in(request, data["username"], data["password"], data.get("otp", ""))
        token, key = services.create_token(user, name=data.get("name", ""), scope=data["scope"],
                                           own_customers_only=data["own_customers_only"],
                                           expires_in_days=data.get("expires_in_days"))
        token.token = key
        return Response(s.TokenSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke the API token of this request",
                   responses={204: OpenApiResponse(description="Revoked."), 400: s.ErrorSerializer})
    def delete(self, request):
        """Revoke the token this request is authenticated with; requests with it fail with 401 from
        now on. (Signed in with a session, there is no such token: 400.)"""
        if not isinstance(request.auth, ApiToken):
            raise exceptions.ValidationError("Send the token to revoke as `Authorization: Token <key>`; "
                                             "revoke your other tokens on the account page.")
        services.revoke_token(request.user, request.auth.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotFoundView(APIView):
    """Any other path under /api/v1/: a 404 in the API's error format (not an HTML page)."""

    schema = None
    permission_classes = [AllowAny]
    throttle_classes = []

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise exceptions.NotFound()

    def get(self, request, *args, **kwargs):
        raise exceptions.NotFound()


# --- privacy: right of access and erasure (managers and admins) -------------------------------------------

class _PrivacyView(APIView):
    """A customer the manager may see (another's or unknown id: 404, like every customer lookup)."""

    permission_classes = [IsManager]

    def customer(self, pk):
        return get_object_or_404(selectors.visible_customers(self.request.user), pk=pk)


class CustomerPersonalDataView(_PrivacyView):
    """Everything stored about one customer (right of access), as one JSON document."""

    @extend_schema(summary="Everything stored about a customer (managers)",
                   responses={200: s.PersonalDataSerializer})
    def get(self, request, pk):
        """The customer's profile, interactions and the insights of every stored model run about them,
        with the audit events about their record. The download is recorded in the audit trail."""
        data = privacy.export_personal_data(user=request.user, customer=self.customer(pk))
        response = HttpResponse(privacy.to_json(data), content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="personal-data-customer-{pk}.json"'
        return response


class CustomerEraseView(_PrivacyView):
    """Erase a customer's personal data (right to erasure)."""

    @extend_schema(summary="Erase a customer's personal data (managers)", request=None,
                   responses={200: s.ErasureResultSerializer})
    def post(self, request, pk):
        """Delete the customer's interactions and their rows in every stored model run, blank the profile
        and leave it out of training, in one transaction. The row stays as an empty tombstone."""
        customer = self.customer(pk)
        counts = privacy.erase_customer(user=request.user, customer=customer)
        return Response({"id": customer.pk, "erased_at": customer.erased_at, "deleted": counts})


class CustomerMergeView(_PrivacyView):
    """Merge duplicate customers into this one (managers and admins): the data-quality page's merge."""

    @extend_schema(summary="Merge duplicates into this customer (managers)", request=s.MergeRequestSerializer,
                   responses={200: s.MergeResultSerializer})
    def post(self, request, pk):
        """Move every interaction and suggestion feedback of the `duplicates` to this customer, fill its
        empty fields from them, keep their profiles in `attributes.merged_customers`, then delete them,
        in one transaction (audited). 404 for an unknown id, 409 when the merge is refused."""
        keep = self.customer(pk)
        serializer = s.MergeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = sorted(set(serializer.validated_data["duplicates"]) - {keep.pk})
        duplicates = selectors.visible_customers(request.user).in_bulk(ids)
        missing = [pk for pk in ids if pk not in duplicates]
        if missing:
            raise exceptions.NotFound(f"No customer with id {missing[0]}.")
        moved = services.merge_customers(user=request.user, keep=keep, duplicates=list(duplicates.values()))
        return Response({"id": keep.pk, "merged": ids, "moved": moved})
