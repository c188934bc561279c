"""The use cases the pages and the API call, by the name they call them (``services.X``).

Nothing is defined here: each name lives in the module of its role, where to read and change it.

- imports: crm.imports.importer (one import job), crm.imports.queue (imports run by a worker)
- the job lifecycle shared with training runs: crm.jobs
- access (roles, the rep-sees-own rule, the write checks): crm.access
- customers, products: crm.records; the customers' bulk upsert: crm.customer_upsert;
  API tokens: crm.tokens; merging customers: crm.merging
- interactions (logging, changing, the bulk upsert): crm.interactions
- follow-ups (making, completing, cancelling, reassigning, changing): crm.followups
- the second factor (who must have one, enrolment, recovery codes, checking a code): crm.second_factor
"""
from crm.access import NotAllowed
from crm.customer_upsert import UpsertConflict, upsert_customers
from crm.followups import (
    FollowUpClosed,
    cancel_followup,
    complete_followup,
    create_followup,
    reassign_followup,
    update_followup,
)
from crm.imports.importer import ORDER, ImportFailed, import_files, summary
from crm.imports.queue import enqueue_checked, enqueue_import, import_uploads
from crm.interactions import delete_interaction, log_interaction, update_interaction, upsert_interactions
from crm.jobs import BackgroundUnavailable
from crm.merging import MERGE_FILLED_FIELDS, MergeRefused, merge_customers
from crm.records import (
    InUse,
    create_customer,
    create_product,
    delete_customer,
    delete_product,
    update_customer,
    update_product,
)
from crm.tokens import TokenRefused, create_token, revoke_token, revoke_tokens

__all__ = [
    "ORDER", "BackgroundUnavailable", "FollowUpClosed", "cancel_followup", "complete_followup", "create_followup",
    "reassign_followup", "update_followup", "ImportFailed", "InUse", "MERGE_FILLED_FIELDS", "MergeRefused", "NotAllowed",
    "TokenRefused", "UpsertConflict", "create_customer", "create_product", "create_token", "delete_customer",
    "delete_interaction",
    "delete_product", "enqueue_checked", "enqueue_import", "import_files", "import_uploads", "log_interaction",
    "merge_customers", "revoke_token", "revoke_tokens", "summary", "update_customer", "update_interaction",
    "update_product", "upsert_customers", "upsert_interactions",
]
