"""Length limits of the contract's text columns (README, "Import format"), written once.

The models' ``max_length``, the import's row checks (crm.imports.rows) and column-wise checks
(crm.imports.batches) and the API's serializers all read them here. Plain values, no Django:
the import's validation has no ORM.
"""

CUSTOMER = {"external_id": 100, "name": 200, "email": 254, "phone": 50, "company": 200, "country": 100,
            "city": 100}
PRODUCT = {"sku": 100, "name": 300, "category": 200, "tags": 500}
# A customer tag ("vip", "trade fair 2026"): short labels, shown as chips.
TAG_NAME = 50
# Tags on one customer (a write names them all): far more than a list page shows as chips.
CUSTOMER_TAGS = 100
INTERACTION = {"external_id": 100, "order_ref": 100, "channel": 100}
# An owner is a user's username: django.contrib.auth's User.username is 150 characters.
USERNAME = 150
# A follow-up's note and a completion's outcome: a few paragraphs, well inside what an interaction's
# notes take (the log form's 5,000) when completing one joins them; a reason is one worklist line.
FOLLOWUP = {"note": 2000, "outcome": 2000, "reason": 300}
