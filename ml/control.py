"""The control group: customers whose suggestions are computed but not shown, so the Models page
can compare how often shown and control customers bought what was suggested (ml.funnel).

A customer's place is a stable hash of their id and the installation's salt (ml.models.ControlSalt),
read as a number in [0, 1): they are in the control group when it is below ML_CONTROL_SHARE. The
same customer lands in the same place at every retrain, a new customer gets one at the first run
that scores them, and changing the share only moves the customers between the old and new share.
A run fixes each suggestion's ``control`` flag when it writes it; the lists filter on that flag
(ml.insights.SHOWN), so changing the share changes nothing until the next retrain.
"""
from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction

from ml.models import ControlSalt


def control_salt() -> str:
    """The installation's salt, created on first use (a concurrent first use reads the winner's)."""
    row = ControlSalt.objects.order_by("pk").first()
    if row is not None:
        return row.salt
    try:
        with transaction.atomic():
            ControlSalt.objects.create(pk=1, salt=secrets.token_hex(16))
    except IntegrityError:
        pass
    return ControlSalt.objects.order_by("pk").first().salt


def place(customer_id: int, salt: str) -> float:
    """The customer's place in [0, 1): the first 8 bytes of sha256(salt:id), uniform and stable."""
    digest = hashlib.sha256(f"{salt}:{int(customer_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def control_ids(customer_ids, share: float | None = None) -> set[int]:
    """The ids among ``customer_ids`` in the control group at ``share`` (default ML_CONTROL_SHARE)."""
    share = settings.ML_CONTROL_SHARE if share is None else share
    if share <= 0:
        return set()
    salt = control_salt()
    return {int(c) for c in customer_ids if place(c, salt) < share}
