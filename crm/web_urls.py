"""HTML pages for sales staff (owned by the web pages work)."""
from django.urls import path

from crm import views

urlpatterns = [
    path("", views.home, name="home"),
    path("customers/", views.customer_list, name="customer_list"),
    path("customers/export.csv", views.customer_export, name="customer_export"),
    path("customers/<int:pk>/", views.customer_detail, name="customer_detail"),
    path("customers/<int:pk>/log/", views.customer_log, name="customer_log"),
    path("customers/<int:pk>/feedback/", views.customer_feedback, name="customer_feedback"),
    path("segments/", views.segment_list, name="segment_list"),
    path("products/", views.product_list, name="product_list"),
    path("products/<int:pk>/", views.product_detail, name="product_detail"),
    path("models/", views.model_list, name="model_list"),
    path("models/retrain/", views.model_retrain, name="model_retrain"),
    path("models/runs/<int:pk>/status.json", views.run_status, name="run_status"),
    path("models/runs/<int:pk>/publish/", views.model_publish, name="model_publish"),
    path("imports/", views.import_list, name="import_list"),
    path("imports/<int:pk>/", views.import_detail, name="import_detail"),
    path("imports/<int:pk>/status.json", views.import_status, name="import_status"),
    path("imports/<int:pk>/confirm/", views.import_confirm, name="import_confirm"),
    path("imports/<int:pk>/rejected/<str:kind>.csv", views.import_rejected, name="import_rejected"),
]
urlpatterns += [
    path("customers/new/", views.customer_create, name="customer_create"),
    path("customers/<int:pk>/edit/", views.customer_edit, name="customer_edit"),
    path("account/", views.account, name="account"),
    path("account/token/create/", views.account_token_create, name="account_token_create"),
    path("account/token/regenerate/", views.account_token_regenerate, name="account_token_regenerate"),
    path("account/token/revoke/", views.account_token_revoke, name="account_token_revoke"),
]

# Privacy: right of access and erasure (managers and admins).
urlpatterns += [
    path("customers/<int:pk>/personal-data.json", views.customer_personal_data, name="customer_personal_data"),
    path("customers/<int:pk>/erase/", views.customer_erase, name="customer_erase"),
]

# Correcting the timeline, and data quality (managers).
urlpatterns += [
    path("interactions/<int:pk>/edit/", views.interaction_edit, name="interaction_edit"),
    path("interactions/<int:pk>/delete/", views.interaction_delete, name="interaction_delete"),
    path("data-quality/", views.data_quality, name="data_quality"),
    path("data-quality/merge/", views.data_quality_merge, name="data_quality_merge"),
]
