"""A file's header: the contract's columns found, other names mapped onto them, suggestions.

What spreadsheets export is taken as well as the contract's own format: other column names
are mapped onto the contract's (:func:`read_header`, :func:`suggest_mapping`).
"""
from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass

from crm.imports.rows import FileSpec
from crm.imports.values import FileError

# --- column mapping -----------------------------------------------------------------------------
#
# Other names for the contract's columns, as spreadsheets and other systems export them,
# compared after _normal() (lower case, letters and digits only: "E-mail" -> "email").

SYNONYMS = {
    "customers": {
        "external_id": ("id", "customerid", "customerno", "customernumber", "customercode", "clientid", "clientno",
                        "clientnumber", "accountid", "accountnumber", "contactid"),
        "name": ("fullname", "customername", "customer", "contactname", "clientname"),
        "email": ("emailaddress", "mail", "emails"),
        "phone": ("telephone", "tel", "phonenumber", "mobile", "mobilephone", "cell"),
        "company": ("companyname", "organisation", "organization", "business", "firm"),
        "country": ("countrycode", "nation"),
        "city": ("town", "locality"),
        "signup_date": ("signup", "signupdate", "signedup", "registered", "registrationdate", "joined",
                        "joindate", "customersince", "createdat", "created", "firstseen"),
        "owner": ("ownerusername", "salesrep", "rep", "accountowner", "accountmanager", "assignedto"),
    },
    "products": {
        "sku": ("id", "productid", "productcode", "itemcode", "itemid", "itemno", "articleno", "articlenumber",
                "code", "partnumber"),
        "name": ("productname", "title", "itemname", "product"),
        "category": ("productcategory", "group", "productgroup", "type"),
        "price": ("unitprice", "listprice", "priceeach", "cost"),
        "description": ("details", "longdescription"),
        "tags": ("keywords", "labels"),
        "active": ("isactive", "enabled", "available", "status"),
    },
    "interactions": {
        "customer_external_id": ("customerid", "customer", "customerno", "customernumber", "clientid",
                                 "clientno", "accountid", "customerexternalid"),
        "type": ("interactiontype", "eventtype", "event", "activity", "activitytype", "kind"),
        "occurred_at": ("date", "datetime", "timestamp", "time", "occurredat", "orderdate", "eventdate",
                        "activitydate", "when", "createdat"),
        "product_sku": ("sku", "productid", "productcode", "itemcode", "itemid", "product", "articleno"),
        "quantity": ("qty", "units", "count", "amountofitems"),
        "amount": ("total", "value", "revenue", "sales", "linetotal", "totalprice", "spend", "paid"),
        "order_ref": ("order", "orderid", "orderno", "ordernumber", "orderreference", "invoice", "invoiceno",
                      "invoicenumber", "transactionid"),
        "external_id": ("id", "interactionid", "eventid", "rowid", "lineid"),
        "channel": ("source", "medium"),
        "notes": ("note", "comment", "comments", "remarks", "description"),
    },
}


def _normal(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9a-z]", "", ascii_name.lower())


def suggest_mapping(spec: FileSpec, header: list[str], mapping: dict | None = None) -> dict:
    """Proposed ``{file column: contract column}`` for the columns that are not contract names.

    A proposal needs its contract column to be absent from the file (and from ``mapping``) and
    only one column of the file to look like it.
    """
    mapping = mapping or {}
    names = [name.strip() for name in header]
    taken = {mapping.get(name, name) for name in names}
    found: dict[str, list[str]] = {}
    synonyms = SYNONYMS.get(spec.kind, {})
    for name in names:
        if not name or name in spec.known or name in mapping:
            continue
        key = _normal(name)
        for column in spec.known:
            if key == _normal(column) or key in synonyms.get(column, ()):
                found.setdefault(column, []).append(name)
                break
    return {names_[0]: column for column, names_ in found.items() if len(names_) == 1 and column not in taken}


def check_mapping(spec: FileSpec, mapping: dict) -> dict:
    """A mapping's entries cleaned (names stripped, empty targets dropped); FileError for a target
    that is not one of the kind's columns."""
    out = {}
    for source, target in (mapping or {}).items():
        source, target = str(source).strip(), str(target or "").strip()
        if not source or not target:
            continue
        if target not in spec.known:
            raise FileError(f"the mapping of {spec.kind} files sends {source!r} to {target!r}, which is not one of "
                            f"their columns ({', '.join(spec.known)})")
        out[source] = target
    return out


@dataclass(frozen=True)
class Header:
    """A file's header read with a mapping: ``original`` names as in the file (stripped), ``names``
    the record keys (the contract's names where mapped), ``mapping`` what was applied
    (``{file column: contract column}``), ``suggested`` proposals for the other columns."""

    original: list
    names: list
    extra: tuple
    mapping: dict
    suggested: dict


def read_header(reader, spec: FileSpec, mapping: dict | None = None, apply_suggestions: bool = False) -> Header:
    """Read and check the header row from a ``csv.reader``; FileError when it cannot be imported.

    ``mapping``: ``{file column: contract column}``; ``apply_suggestions``: map the columns
    :func:`suggest_mapping` proposes as well (a dry run shows what they would give).
    """
    try:
        raw = next(reader)
    except StopIteration:
        raise FileError(f"{spec.kind} file is empty") from None
    except csv.Error as exc:
        raise FileError(f"{spec.kind} file header cannot be read: {exc}") from None
    if raw and raw[0].startswith("\ufeff"):
        raw[0] = raw[0][1:]
    original = [name.strip() for name in raw]
    mapping = {k: v for k, v in check_mapping(spec, mapping or {}).items() if k in original}
    suggested = suggest_mapping(spec, original, mapping)
    applied = {**suggested, **mapping} if apply_suggestions else mapping
    names = [applied.get(name, name) for name in original]
    for target in set(applied.values()):
        sources = [name for name in original if applied.get(name, name) == target]
        if len(sources) > 1:
            raise FileError(f"{spec.kind} file: columns {', '.join(map(repr, sources))} would all be {target}; "
                            "map only one of them")
    try:
        extra = spec.check_header(names)
    except FileError as exc:
        hints = [f"{name!r} looks like {column}" for name, column in suggested.items() if name not in applied]
        if hints and "missing required" in str(exc):
            raise FileError(f"{exc} ({'; '.join(hints)}: map it with a dry run on the upload page, the API's "
                            "mapping or import_data --mapping)") from None
        raise
    return Header(original=original, names=names, extra=extra, mapping={k: v for k, v in applied.items() if k != v},
                  suggested=suggested)
