"""REST API under /api/v1/. Lookups: customers and interactions by `id` or
`by-external-id/{external_id}`, products by `sku`. Trailing slashes are required."""
from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace, csp_update
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from web.api import customer_bulk, followups, views, webhooks

router = SimpleRouter()
router.register("customers", views.CustomerViewSet, basename="api-customer")
router.register("products", views.ProductViewSet, basename="api-product")
router.register("interactions", views.InteractionViewSet, basename="api-interaction")
router.register("segments", views.SegmentViewSet, basename="api-segment")
router.register("training-runs", views.TrainingRunViewSet, basename="api-training-run")
router.register("imports", views.ImportViewSet, basename="api-import")
router.register("follow-ups", followups.FollowUpViewSet, basename="api-follow-up")
router.register("webhooks", webhooks.WebhookEndpointViewSet, basename="api-webhook")

_DETAIL = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}

urlpatterns = [
    # Before the router's routes: "bulk" must not be taken for a customer's id.
    path("customers/bulk/", customer_bulk.CustomerBulkView.as_view(), name="api-customer-bulk"),
    path("customers/by-external-id/<str:external_id>/",
         views.CustomerByExternalIdViewSet.as_view(_DETAIL), name="api-customer-by-external-id"),
    path("customers/by-external-id/<str:external_id>/recommendations/",
         views.CustomerByExternalIdViewSet.as_view({"get": "recommendations"}),
         name="api-customer-by-external-id-recommendations"),
    path("interactions/by-external-id/<str:external_id>/",
         views.InteractionByExternalIdViewSet.as_view(_DETAIL), name="api-interaction-by-external-id"),
    *router.urls,
    path("feedback/", views.FeedbackView.as_view(), name="api-feedback"),
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Redoc injects <style> elements before it is handed the CSP nonce and searches in a blob: worker:
    # this page alone allows inline styles and that worker (its scripts still need the nonce).
    path("redoc/", csp_update({"worker-src": [SELF, "blob:"]})(csp_replace({"style-src": [SELF, UNSAFE_INLINE]})(
        SpectacularRedocView.as_view(url_name="api-schema"))), name="api-redoc"),
    # [\s\S], not ".": a path with an encoded newline gets the API's JSON 404 too, not the site's HTML one.
    re_path(r"^[\s\S]*$", views.NotFoundView.as_view(), name="api-not-found"),
]

# Privacy (right of access and erasure): inserted before the catch-all 404, which must stay last.
urlpatterns[-1:-1] = [
    path("customers/<int:pk>/personal-data/", views.CustomerPersonalDataView.as_view(),
         name="api-customer-personal-data"),
    path("customers/<int:pk>/erase/", views.CustomerEraseView.as_view(), name="api-customer-erase"),
    path("customers/<int:pk>/merge/", views.CustomerMergeView.as_view(), name="api-customer-merge"),
]
