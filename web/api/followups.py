"""The follow-ups API (/api/v1/follow-ups/): list with filters, create, retrieve, partial update
and complete. Rules: crm.followups and crm.access (a rep sees and acts on their own follow-ups of
customers they see; managers the team's and reassign), so another rep's follow-up is a 404."""
from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from crm import followups, limits, selectors
from crm.access import visible_followups
from crm.models import Customer, FollowUp, Product
from ml import services as ml_services


class FollowUpSerializer(serializers.ModelSerializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.none(),
                                                  help_text="The customer's id (one you can see).")
    owner = serializers.SlugRelatedField(slug_field="username", queryset=get_user_model().objects.filter(is_active=True),
                                         required=False, help_text="Who does it; default: the customer's owner or "
                                                                   "you. Someone else only for managers.")
    product = serializers.SlugRelatedField(slug_field="sku", queryset=Product.objects.all(), required=False,
                                           allow_null=True, help_text="The suggested product's sku, if made from one.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=limits.FOLLOWUP["note"])
    completed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    interaction = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True,
                                                     help_text="The interaction completing it logged.")

    class Meta:
        model = FollowUp
        fields = ("id", "customer", "owner", "due_at", "type", "note", "product", "suggestion_kind", "reason",
                  "status", "completed_at", "completed_by", "interaction", "created_by", "created_at")
        read_only_fields = ("status", "completed_at", "completed_by", "interaction", "created_by", "created_at")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["customer"].queryset = selectors.visible_customers(request.user)
        if self.instance is not None and not isinstance(self.instance, list):
            for name in ("customer", "product", "suggestion_kind", "reason"):
                self.fields[name].read_only = True


class FollowUpQuerySerializer(serializers.Serializer):
    owner = serializers.ChoiceField(choices=["me"], required=False,
                                    help_text="`me`: only yours (a sales rep only ever sees their own).")
    status = serializers.ChoiceField(choices=FollowUp.Status.choices, required=False, help_text="Default: all.")
    due_after = serializers.DateTimeField(required=False, help_text="Due at or after (inclusive).")
    due_before = serializers.DateTimeField(required=False, help_text="Due before (exclusive).")
    customer = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class CompleteSerializer(serializers.Serializer):
    outcome = serializers.CharField(required=False, allow_blank=True, default="", max_length=limits.FOLLOWUP["outcome"])


@extend_schema_view(
    list=extend_schema(summary="List follow-ups", parameters=[FollowUpQuerySerializer]),
    retrieve=extend_schema(summary="A follow-up"),
    create=extend_schema(summary="Plan a follow-up (from a suggestion: marks it accepted)", examples=[OpenApiExample(
        "Call back", request_only=True, value={"customer": 1042, "type": "call", "due_at": "2025-07-08T09:00:00+02:00",
                                               "note": "Offer Dog food 12 kg: buys every 30 days"})]),
    partial_update=extend_schema(summary="Change an open follow-up's due time, type, note or (managers) owner"),
)
class FollowUpViewSet(viewsets.GenericViewSet):
    """Tasks on customers: calls, e-mails, meetings and to-dos, by due date then id. Completing one
    logs the matching interaction (a note for a to-do), dated at completion."""

    serializer_class = FollowUpSerializer
    lookup_value_regex = r"[0-9]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return visible_followups(self.request.user).select_related("customer", "owner", "product", "created_by",
                                                                   "completed_by")

    def list(self, request):
        query = FollowUpQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows = followups.followup_list(request.user, mine=q.get("owner") == "me", status=q.get("status", ""),
                                       customer=q.get("customer"), due_after=q.get("due_after"),
                                       due_before=q.get("due_before")).select_related("created_by", "completed_by")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        followup = ml_services.plan_followup(user=request.user, **data)  # from a suggestion: also marks it accepted
        return Response(self.get_serializer(followup).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, **kwargs):
        followup = self.get_object()
        serializer = self.get_serializer(followup, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        fields = {k: v for k, v in serializer.validated_data.items() if k in (*followups.CHANGEABLE, "owner")}
        followup = followups.update_followup(user=request.user, followup=followup, **fields)
        return Response(self.get_serializer(followup).data)

    @extend_schema(summary="Complete a follow-up: logs the interaction", request=CompleteSerializer,
                   responses={200: FollowUpSerializer},
                   examples=[OpenApiExample("With an outcome", request_only=True, value={"outcome": "wants a quote"})])
    @action(detail=True, methods=["post"])
    def complete(self, request, **kwargs):
        """Mark it done and log the call, e-mail or meeting (a note for a to-do) now, with the note and
        the optional outcome. The response's `interaction` is the logged interaction's id. 409 when
        it is already done or cancelled."""
        followup = self.get_object()
        body = CompleteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        followup = followups.complete_followup(user=request.user, followup=followup,
                                               outcome=body.validated_data["outcome"])
        return Response(self.get_serializer(followup).data)
