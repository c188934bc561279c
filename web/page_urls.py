"""URLs of the HTML pages for sales staff (names and paths are part of the contract)."""
from django.urls import path

from web.views import (
    account,
    catalogue,
    customer_bulk,
    customers,
    data_quality,
    followups,
    home,
    imports,
    privacy,
    runs,
    second_factor,
)

urlpatterns = [
    path("", home.home, name="home"),
    path("customers/", customers.customer_list, name="customer_list"),
    path("customers/export.csv", customers.customer_export, name="customer_export"),
    path("customers/bulk/", customer_bulk.customer_bulk, name="customer_bulk"),
    path("customers/<int:pk>/", customers.customer_detail, name="customer_detail"),
    path("customers/<int:pk>/log/", customers.customer_log, name="customer_log"),
    path("customers/<int:pk>/feedback/", customers.customer_feedback, name="customer_feedback"),
    path("segments/", catalogue.segment_list, name="segment_list"),
    path("products/", catalogue.product_list, name="product_list"),
    path("products/<int:pk>/", catalogue.product_detail, name="product_detail"),
    path("models/", runs.model_list, name="model_list"),
    path("models/retrain/", runs.model_retrain, name="model_retrain"),
    path("models/runs/<int:pk>/status.json", runs.run_status, name="run_status"),
    path("models/runs/<int:pk>/publish/", runs.model_publish, name="model_publish"),
    path("imports/", imports.import_list, name="import_list"),
    path("imports/<int:pk>/", imports.import_detail, name="import_detail"),
    path("imports/<int:pk>/status.json", imports.import_status, name="import_status"),
    path("imports/<int:pk>/confirm/", imports.import_confirm, name="import_confirm"),
    path("imports/<int:pk>/rejected/<str:kind>.csv", imports.import_rejected, name="import_rejected"),
]
urlpatterns += [
    path("customers/new/", customers.customer_create, name="customer_create"),
    path("customers/<int:pk>/edit/", customers.customer_edit, name="customer_edit"),
    path("account/", account.account, name="account"),
    path("account/tokens/new/", account.account_token_create, name="account_token_create"),
    path("account/tokens/<int:pk>/revoke/", account.account_token_revoke, name="account_token_revoke"),
]

# Privacy: right of access and erasure (managers and admins).
urlpatterns += [
    path("customers/<int:pk>/personal-data.json", privacy.customer_personal_data, name="customer_personal_data"),
    path("customers/<int:pk>/erase/", privacy.customer_erase, name="customer_erase"),
]

# Correcting the timeline, and data quality (managers).
urlpatterns += [
    path("interactions/<int:pk>/edit/", customers.interaction_edit, name="interaction_edit"),
    path("interactions/<int:pk>/delete/", customers.interaction_delete, name="interaction_delete"),
    path("data-quality/", data_quality.data_quality, name="data_quality"),
    path("data-quality/merge/", data_quality.data_quality_merge, name="data_quality_merge"),
]

# The second factor: the OTP step after the password, enrolment, recovery codes, disabling.
urlpatterns += [
    path("account/otp/verify/", second_factor.otp_verify, name="account_otp_verify"),
    path("account/otp/enrol/", second_factor.otp_enrol, name="account_otp_enrol"),
    path("account/otp/recovery-codes/", second_factor.otp_recovery_codes, name="account_otp_recovery_codes"),
    path("account/otp/disable/", second_factor.otp_disable, name="account_otp_disable"),
]

# Follow-ups: planning one from a suggestion or worklist row, completing, cancelling, reassigning, the list.
urlpatterns += [
    path("customers/<int:pk>/follow-ups/new/", followups.followup_new, name="followup_new"),
    path("follow-ups/", followups.followup_list, name="followup_list"),
    path("follow-ups/<int:pk>/complete/", followups.followup_complete, name="followup_complete"),
    path("follow-ups/<int:pk>/cancel/", followups.followup_cancel, name="followup_cancel"),
    path("follow-ups/<int:pk>/reassign/", followups.followup_reassign, name="followup_reassign"),
]
