"""Data quality: what in the stored data would mislead the models or the people who read them.

Reads only (the merge that fixes a duplicate is crm.merging.merge_customers). The data-quality
page for managers shows each finding with links to its records:

- **likely duplicate customers**: the same e-mail address (trimmed, case-insensitive), the same
  phone number (its digits, compared on the last :data:`PHONE_DIGITS`), or a near-identical name
  at a near-identical company (both at least :data:`NAME_SIMILARITY` on rapidfuzz's ratio after
  normalising: accents, case, punctuation and legal suffixes such as "Ltd" or "GmbH" dropped).
  Names are compared with their neighbours in two sort orders (company then name, name then
  company; :data:`NEIGHBOURS` each), the sorted-neighbourhood method of record linkage, so the
  cost grows with the number of customers, not its square. Customers without a company are
  matched on e-mail and phone only: two "John Smith"s are more often two people than one;
- **missing values** per column of customers, products and interactions;
- **outliers**: an order (rows sharing an ``order_ref``, else one purchase) of at least
  :data:`OUTLIER_FACTOR` times the customer's usual order, the median of their other orders;
- **dates out of range**: interactions dated in the future (crm.clock's rule, for rows stored
  before every door refused them) or before :data:`ANCIENT_BEFORE`, and such sign-up dates.
"""
from __future__ import annotations

import re
import statistics
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time

from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from crm import clock
from crm.models import Customer, Interaction, Product

# Older than any record a CRM in use today holds: such a date is a placeholder (1900-01-01,
# 1970-01-01 from a zero timestamp) or a typo, and it stretches every history the models read.
ANCIENT_BEFORE = date(1990, 1, 1)
# "An order 100x the customer's usual": a typo (a misplaced decimal point is 100x) or a bulk
# order that would dominate the customer's forecast.
OUTLIER_FACTOR = 100
# The usual order is the median of the customer's *other* orders: two at least, or it is one order.
MIN_OTHER_ORDERS = 2
# National numbers are 9-11 digits: the last 9 match "+49 30 1234567" with "030 1234567";
# fewer than 7 digits identify no one (extensions, placeholders such as "0").
PHONE_DIGITS = 9
MIN_PHONE_DIGITS = 7
# rapidfuzz ratio (0-100): 90 takes one typo in a ten-letter name ("Jon Smith" / "John Smith").
NAME_SIMILARITY = 90
NEIGHBOURS = 5
# Findings listed per kind on the page (the counts are always complete).
LIST_LIMIT = 50
# Candidate customers whose orders are read to find outliers (the SQL pre-filter finds them).
OUTLIER_CANDIDATES = 500

_LEGAL_SUFFIXES = frozenset({"ltd", "limited", "gmbh", "inc", "llc", "co", "corp", "corporation", "company",
                             "plc", "sa", "sas", "sarl", "ag", "bv", "nv", "srl", "spa", "oy", "ab", "as", "kg"})
_WORDS = re.compile(r"[^\w]+")


def normalise_email(value: str) -> str:
    return (value or "").strip().casefold()


def normalise_phone(value: str) -> str:
    """The phone number's last PHONE_DIGITS digits, or "" when it has fewer than MIN_PHONE_DIGITS."""
    digits = re.sub(r"\D", "", value or "")
    return digits[-PHONE_DIGITS:] if len(digits) >= MIN_PHONE_DIGITS else ""


def normalise_name(value: str, *, company: bool = False) -> str:
    """Lower case, without accents or punctuation, words in order; a company also without its legal form."""
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    words = [w for w in _WORDS.split(text) if w and w != "_"]
    if company:
        words = [w for w in words if w not in _LEGAL_SUFFIXES] or words
    return " ".join(words)


@dataclass
class DuplicateGroup:
    customers: list  # Customer rows, oldest first
    reasons: list = field(default_factory=list)  # "same e-mail", "same phone", "similar name and company"


class _Groups:
    """Union-find over customer ids, remembering why each pair was joined."""

    def __init__(self):
        self.parent, self.reasons = {}, defaultdict(set)

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, ids, reason):
        ids = list(ids)
        root = self.find(ids[0])
        for other in ids[1:]:
            r = self.find(other)
            if r != root:
                self.parent[r] = root
                self.reasons[root] |= self.reasons.pop(r, set())
        self.reasons[root].add(reason)

    def groups(self):
        members = defaultdict(list)
        for x in self.parent:
            members[self.find(x)].append(x)
        return [(sorted(ids), sorted(self.reasons[root])) for root, ids in members.items() if len(ids) > 1]


def _active_customers():
    return Customer.objects.filter(erased_at__isnull=True)


def duplicate_groups(limit: int = LIST_LIMIT) -> tuple[list[DuplicateGroup], int]:
    """(the first ``limit`` groups of likely duplicate customers, the number of groups).

    Groups join every customer linked by any rule (A shares an e-mail with B, B a phone with C:
    one group), so a merge handles them together. Oldest first within a group, the groups by
    their oldest member.
    """
    groups = _Groups()
    emails = (_active_customers().exclude(email="").annotate(key=Lower(Trim("email"))).values("key")
              .annotate(n=Count("id")).filter(n__gt=1).values_list("key", flat=True))
    by_email = defaultdict(list)
    for pk, email in (_active_customers().annotate(key=Lower(Trim("email"))).filter(key__in=list(emails))
                      .values_list("pk", "email")):
        by_email[normalise_email(email)].append(pk)
    for ids in by_email.values():
        if len(ids) > 1:
            groups.join(ids, "same e-mail")

    by_phone = defaultdict(list)
    for pk, phone in _active_customers().exclude(phone="").values_list("pk", "phone").iterator(chunk_size=5000):
        key = normalise_phone(phone)
        if key:
            by_phone[key].append(pk)
    for ids in by_phone.values():
        if len(ids) > 1:
            groups.join(ids, "same phone")

    for ids in _similar_name_pairs():
        groups.join(ids, "similar name and company")

    found = groups.groups()
    found.sort(key=lambda g: g[0][0])
    shown = found[:limit]
    rows = Customer.objects.select_related("owner").in_bulk([pk for ids, _ in shown for pk in ids])
    return [DuplicateGroup([rows[pk] for pk in ids if pk in rows], reasons) for ids, reasons in shown], len(found)


def _similar_name_pairs():
    """Pairs of customer ids with near-identical names at near-identical companies (sorted neighbourhood)."""
    from rapidfuzz.fuzz import ratio  # C++ similarity, imported where it is used: only this page needs it

    people = [(pk, normalise_name(name), normalise_name(company, company=True))
              for pk, name, company in _active_customers().exclude(name="").exclude(company="")
              .values_list("pk", "name", "company").iterator(chunk_size=5000)]
    people = [p for p in people if p[1] and p[2]]
    seen = set()
    for order in (lambda p: (p[2], p[1]), lambda p: (p[1], p[2])):
        ranked = sorted(people, key=order)
        for i, (pk, name, company) in enumerate(ranked):
            for other, other_name, other_company in ranked[i + 1:i + 1 + NEIGHBOURS]:
                pair = (min(pk, other), max(pk, other))
                if pair in seen:
                    continue
                if (ratio(name, other_name) >= NAME_SIMILARITY
                        and ratio(company, other_company) >= NAME_SIMILARITY):
                    seen.add(pair)
                    yield pair


# --- missing values --------------------------------------------------------------------------------

# (table label, model, [(column label, condition of a missing value, rows it applies to)])
_PURCHASES = Q(type__in=("purchase", "refund"))
MISSING_COLUMNS = (
    ("customers", Customer, [("name", Q(name=""), Q()), ("email", Q(email=""), Q()), ("phone", Q(phone=""), Q()),
                             ("company", Q(company=""), Q()), ("country", Q(country=""), Q()),
                             ("city", Q(city=""), Q()), ("signup_date", Q(signup_date__isnull=True), Q()),
                             ("owner", Q(owner__isnull=True), Q())]),
    ("products", Product, [("category", Q(category=""), Q()), ("price", Q(price__isnull=True), Q()),
                           ("description", Q(description=""), Q()), ("tags", Q(tags=""), Q())]),
    ("interactions", Interaction, [
        ("product_sku (purchases and refunds)", Q(product__isnull=True), _PURCHASES),
        ("amount (purchases and refunds)", Q(amount__isnull=True), _PURCHASES),
        ("order_ref (purchases)", Q(order_ref=""), Q(type="purchase")),
        ("channel", Q(channel=""), Q()), ("notes", Q(notes=""), Q())]),
)


def missing_values() -> list[dict]:
    """[{"table", "rows", "columns": [{"column", "key", "missing", "of", "percent"}]}], one query per table."""
    out = []
    for table, model, columns in MISSING_COLUMNS:
        rows = model.objects.filter(erased_at__isnull=True) if model is Customer else model.objects.all()
        aggregates = {"rows": Count("id")}
        for i, (_label, missing, applies) in enumerate(columns):
            aggregates[f"m{i}"] = Count("id", filter=missing & applies)
            aggregates[f"n{i}"] = Count("id", filter=applies) if applies else Count("id")
        counts = rows.aggregate(**aggregates)
        out.append({"table": table, "rows": counts["rows"], "columns": [
            {"column": label, "key": f"{table}.{i}", "missing": counts[f"m{i}"], "of": counts[f"n{i}"],
             "percent": 100.0 * counts[f"m{i}"] / counts[f"n{i}"] if counts[f"n{i}"] else 0.0}
            for i, (label, _m, _a) in enumerate(columns)]})
    return out


def missing_records(key: str, limit: int = LIST_LIMIT) -> tuple[str, str, list]:
    """(table, column, the first ``limit`` records missing it) for a ``key`` of :func:`missing_values`;
    raises KeyError for an unknown key."""
    table, _, index = key.partition(".")
    for name, model, columns in MISSING_COLUMNS:
        if name == table and index.isdigit() and int(index) < len(columns):
            label, missing, applies = columns[int(index)]
            rows = model.objects.filter(missing & applies)
            if model is Customer:
                rows = rows.filter(erased_at__isnull=True)
            elif model is Interaction:
                rows = rows.select_related("customer").order_by("-occurred_at", "-id")
            else:
                rows = rows.order_by("name", "sku")
            return table, label, list(rows[:limit])
    raise KeyError(key)


# --- outliers ----------------------------------------------------------------------------------------

@dataclass
class Outlier:
    customer: Customer
    order: str  # the order_ref, or "" for a single purchase row
    occurred_at: datetime
    amount: float
    usual: float  # the median of the customer's other orders

    @property
    def factor(self) -> float:
        return self.amount / self.usual


def outlier_orders(limit: int = LIST_LIMIT) -> tuple[list[Outlier], int, bool]:
    """(the largest ``limit`` outlier orders, how many there are, whether every candidate was checked).

    An order is at least OUTLIER_FACTOR x the median of the customer's other orders (at least
    MIN_OTHER_ORDERS of them, median above 0). A grouped scan of the purchases finds the
    candidate customers, whose largest order is OUTLIER_FACTOR x their smallest positive one (a
    necessary condition: the median of the others is at least that smallest one); only their
    orders are then read, for the first OUTLIER_CANDIDATES of them (by id; the third value is
    False when there were more).
    """
    table = Interaction._meta.db_table
    orders = (f"SELECT customer_id, CASE WHEN order_ref = '' THEN 'row:' || CAST(id AS TEXT) ELSE order_ref END "
              f"AS order_key, SUM(amount) AS total FROM {table} WHERE type = 'purchase' AND amount IS NOT NULL "
              f"GROUP BY customer_id, order_key")
    sql = (f"SELECT customer_id FROM ({orders}) o GROUP BY customer_id "  # noqa: S608 - no user input in it
           f"HAVING COUNT(*) >= %s AND MAX(total) >= %s * MIN(CASE WHEN total > 0 THEN total END) "
           f"ORDER BY customer_id LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [MIN_OTHER_ORDERS + 1, OUTLIER_FACTOR, OUTLIER_CANDIDATES + 1])
        candidates = [row[0] for row in cursor.fetchall()]
    complete = len(candidates) <= OUTLIER_CANDIDATES
    candidates = candidates[:OUTLIER_CANDIDATES]
    if not candidates:
        return [], 0, True
    per_customer = defaultdict(dict)  # customer -> order key -> [ref, first time, total]
    rows = (Interaction.objects.filter(customer_id__in=candidates, type="purchase", amount__isnull=False)
            .values_list("customer_id", "id", "order_ref", "occurred_at", "amount").order_by("occurred_at", "id"))
    for customer_id, pk, ref, at, amount in rows:
        entry = per_customer[customer_id].setdefault(ref or f"row:{pk}", [ref, at, 0.0])
        entry[2] += float(amount)
    found = []
    for customer_id, by_key in per_customer.items():
        totals = [(key, ref, at, total) for key, (ref, at, total) in by_key.items()]
        for key, ref, at, total in totals:
            others = [t for k, _r, _a, t in totals if k != key]
            if len(others) < MIN_OTHER_ORDERS:
                continue
            usual = statistics.median(others)
            if usual > 0 and total >= OUTLIER_FACTOR * usual:
                found.append((customer_id, ref, at, total, usual))
    found.sort(key=lambda f: -f[3] / f[4])
    customers = Customer.objects.in_bulk({f[0] for f in found[:limit]})
    return ([Outlier(customers[c], ref, at, total, usual) for c, ref, at, total, usual in found[:limit]], len(found),
            complete)


# --- dates out of range ------------------------------------------------------------------------------

def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def date_findings(limit: int = LIST_LIMIT) -> list[dict]:
    """[{"what", "one" (singular), "short", "rule", "count", "rows"}] for interactions in the future or before ANCIENT_BEFORE and
    such sign-up dates; ``rows`` are the first ``limit`` (interactions with their customer)."""
    future = Q(occurred_at__gt=clock.latest_allowed())
    ancient = Q(occurred_at__lt=_start_of(ANCIENT_BEFORE))
    interactions = Interaction.objects.select_related("customer")
    today = timezone.localdate()
    signups = _active_customers()
    out = []
    ancient_day = f"{ANCIENT_BEFORE:%Y-%m-%d}"
    for what, short, rule, rows, order in (
            ("interactions", "in the future", "dated in the future (planned calls and meetings belong in follow-ups)",
             interactions.filter(future), "-occurred_at"),
            ("interactions", f"before {ancient_day}", f"dated before {ancient_day}", interactions.filter(ancient),
             "occurred_at"),
            ("customers", "signed up in the future", "signed up in the future", signups.filter(signup_date__gt=today),
             "-signup_date"),
            ("customers", f"signed up before {ancient_day}", f"signed up before {ancient_day}",
             signups.filter(signup_date__lt=ANCIENT_BEFORE), "signup_date")):
        count = rows.count()
        out.append({"what": what, "one": what[:-1], "short": short, "rule": rule, "count": count,
                    "rows": list(rows.order_by(order, "id")[:limit]) if count else []})
    return out
