"""The webhooks API (/api/v1/webhooks/), managers and admins only: endpoints (list, create, read,
change, delete), each endpoint's delivery log, and a test event. Rules and writes: crm.webhooks."""
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from crm import webhooks
from crm.models import WebhookDelivery, WebhookEndpoint
from crm.webhook_models import EVENTS
from web.api.permissions import IsManager


class WebhookEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS), allow_empty=False,
                                   help_text="The events it receives: " + ", ".join(EVENTS) + ".")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = WebhookEndpoint
        fields = ("id", "url", "events", "description", "active", "created_by", "created_at", "updated_at")
        read_only_fields = ("created_by", "created_at", "updated_at")


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, required=False, help_text=(
        "The key of the X-CRM-Signature HMAC: in the answer that made it only (a create, or a change with "
        "`roll_secret`), and to admins in the admin."))

    class Meta(WebhookEndpointSerializer.Meta):
        fields = (*WebhookEndpointSerializer.Meta.fields, "secret")


class WebhookEndpointChangeSerializer(WebhookEndpointSerializer):
    roll_secret = serializers.BooleanField(required=False, default=False, write_only=True,
                                           help_text="true: a new secret (in the answer); the old one stops at once.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = (*WebhookEndpointSerializer.Meta.fields, "roll_secret")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ("id", "event", "event_key", "status", "attempts", "last_status_code", "last_error",
                  "last_duration_ms", "next_attempt_at", "created_at", "last_attempt_at", "delivered_at", "payload")
        read_only_fields = fields


class DeliveryQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False, help_text="Default: all.")


class PingResponseSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Deliveries queued (1).")


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints (managers)"),
    retrieve=extend_schema(summary="A webhook endpoint (managers)"),
    create=extend_schema(summary="Add a webhook endpoint (managers): the answer holds its secret, once",
                         responses={201: WebhookEndpointWithSecretSerializer},
                         examples=[OpenApiExample("Churn alerts", request_only=True, value={
                             "url": "https://hooks.example.com/crm", "events": ["customer.churn_risk"],
                             "description": "retention team"})]),
    partial_update=extend_schema(summary="Change a webhook endpoint (managers)", request=WebhookEndpointChangeSerializer,
                                 responses={200: WebhookEndpointWithSecretSerializer}),
    destroy=extend_schema(summary="Delete a webhook endpoint and its delivery log (managers)"),
)
class WebhookEndpointViewSet(viewsets.GenericViewSet):
    """Where the CRM POSTs its events (`run.published`, `customer.churn_risk`, `followup.due`), signed with
    the endpoint's secret (README, "Webhooks"). Managers and admins only; sales reps get 403."""

    serializer_class = WebhookEndpointSerializer
    permission_classes = [IsManager]
    lookup_value_regex = r"[0-9]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return WebhookEndpoint.objects.select_related("created_by").order_by("id")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhooks.create_endpoint(user=request.user, **serializer.validated_data)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, **kwargs):
        endpoint = self.get_object()
        serializer = WebhookEndpointChangeSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = webhooks.update_endpoint(user=request.user, endpoint=endpoint, **serializer.validated_data)
        shown = WebhookEndpointWithSecretSerializer if serializer.validated_data.get("roll_secret") \
            else WebhookEndpointSerializer
        return Response(shown(endpoint).data)

    def destroy(self, request, **kwargs):
        webhooks.delete_endpoint(user=request.user, endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="An endpoint's deliveries, newest first (managers)", parameters=[DeliveryQuerySerializer],
                   responses={200: WebhookDeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, **kwargs):
        """The delivery log: each event sent (or to send) to this endpoint, with its status (`pending`,
        `delivered`, `failed`), attempts, the last answer's status code, the last error in one
        sentence and the next attempt's time. Paginated like the other lists."""
        endpoint = self.get_object()
        query = DeliveryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id")
        if "status" in query.validated_data:
            rows = rows.filter(status=query.validated_data["status"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(summary="Send a test event (ping) to this endpoint (managers)", request=None,
                   responses={202: PingResponseSerializer})
    @action(detail=True, methods=["post"])
    def ping(self, request, **kwargs):
        """Queue a `ping` event to this endpoint, whatever it subscribes to; see it in `deliveries/`."""
        queued = webhooks.send_test_event(user=request.user, endpoints=[self.get_object()])
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)
