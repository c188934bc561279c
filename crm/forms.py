"""Forms of the HTML pages: they parse and validate request data; services do the writing."""
from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.utils import timezone

from crm import clock, imports, tags, uploads
from crm.models import ApiToken, Customer, Interaction


def _not_future(value):
    """The clock rule (crm.clock) as a form error: a planned call or meeting is not history."""
    reason = clock.future_reason(value, column="") if value else None
    if reason:
        raise forms.ValidationError(reason[0].upper() + reason[1:] + ".", code="future")
    return value


class LogInteractionForm(forms.Form):
    TYPES = [(Interaction.Type.CALL, "Call"), (Interaction.Type.EMAIL, "Email"),
             (Interaction.Type.MEETING, "Meeting"), (Interaction.Type.NOTE, "Note")]

    type = forms.ChoiceField(label="Type", choices=TYPES)
    occurred_at = forms.DateTimeField(label="When", required=False,
                                      widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                      help_text="Leave empty for now. Only what has happened: a date in the "
                                                "future is refused.")
    notes = forms.CharField(label="Notes", required=False, max_length=5000,
                            widget=forms.Textarea(attrs={"rows": 3}))

    def clean_occurred_at(self):
        return _not_future(self.cleaned_data.get("occurred_at"))


class InteractionEditForm(forms.Form):
    """Correcting a logged interaction on the customer page; crm.interactions.update_interaction writes it."""

    FIELDS = ("type", "occurred_at", "notes", "quantity", "amount")

    type = forms.ChoiceField(label="Type", choices=Interaction.Type.choices)
    occurred_at = forms.DateTimeField(label="When", widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    notes = forms.CharField(label="Notes", required=False, max_length=5000,
                            widget=forms.Textarea(attrs={"rows": 4}))
    quantity = forms.IntegerField(label="Quantity", min_value=0, max_value=2**31 - 1)
    amount = forms.DecimalField(label="Amount", required=False, min_value=0, max_digits=14, decimal_places=2,
                                help_text="Paid for a purchase, refunded for a refund; empty for other types.")

    def clean_occurred_at(self):
        return _not_future(self.cleaned_data.get("occurred_at"))

    @staticmethod
    def initial_for(interaction) -> dict:
        return {"type": interaction.type, "occurred_at": timezone.localtime(interaction.occurred_at),
                "notes": interaction.notes, "quantity": interaction.quantity, "amount": interaction.amount}


class TimelineFilterForm(forms.Form):
    type = forms.MultipleChoiceField(label="Show", required=False, choices=Interaction.Type.choices,
                                     widget=forms.CheckboxSelectMultiple)


def import_upload_error(kind: str, upload) -> str | None:
    """Why an uploaded import file is refused before it is queued (over a limit), or None.

    The same check for every upload door (pages, admin, API); ``import_files`` checks the row
    limit again for the command line and for files queued before a limit was lowered.
    """
    if upload.size > uploads.limit_bytes():  # a file cut off while it streamed in (crm.uploads) too
        return uploads.too_large_message(kind)
    upload.seek(0)
    try:
        too_many = imports.more_rows_than(upload, settings.IMPORT_MAX_ROWS, imports.detect_format(upload))
    finally:
        upload.seek(0)
    if too_many:
        return (f"The {kind} file has more than {settings.IMPORT_MAX_ROWS:,} rows, the limit (IMPORT_MAX_ROWS); "
                "split it into smaller files.")
    return None


DATE_FORMAT_CHOICES = [("", "the source's, else ISO"), *imports.DATE_FORMATS.items()]
KINDS = ("customers", "products", "interactions")


class ImportForm(forms.Form):
    """The upload: files, how they read (dates, the source whose saved mapping applies) and
    whether to check them first (``action``: "check" for a dry run, "import")."""

    customers = forms.FileField(label="customers.csv", required=False)
    products = forms.FileField(label="products.csv", required=False)
    interactions = forms.FileField(label="interactions.csv", required=False)
    date_format = forms.ChoiceField(label="Dates", choices=DATE_FORMAT_CHOICES, required=False,
                                    help_text="ISO dates (2024-12-31) always read.")
    source_name = forms.CharField(label="Source (optional)", max_length=100, required=False,
                                  widget=forms.TextInput(attrs={"list": "import-sources",
                                                                "placeholder": "e.g. Shop export"}),
                                  help_text="Its saved column mapping and date format apply, and this import's are "
                                            "saved under it.")

    def clean(self):
        data = super().clean()
        if not any(data.get(k) for k in ("customers", "products", "interactions")):
            raise forms.ValidationError("Choose at least one CSV file.")
        for kind in ("customers", "products", "interactions"):
            error = import_upload_error(kind, data[kind]) if data.get(kind) else None
            if error:
                self.add_error(kind, error)
        return data


class ImportMappingForm(forms.Form):
    """The dry run's page: which contract column each file column reads as, the date format and
    the source to save them under. ``files``: the dry run's ImportFile rows."""

    date_format = forms.ChoiceField(label="Dates", choices=list(imports.DATE_FORMATS.items()))
    source_name = forms.CharField(label="Save as source", max_length=100, required=False,
                                  help_text="Name it to reuse this mapping and date format for the next upload.")

    def __init__(self, *args, files=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = []  # [(kind, [(file column, form field name, suggested?)])]
        for f in files:
            spec = imports.SPECS[f.kind]
            mapped = {**f.suggested_mapping, **f.column_mapping}
            choices = [("", "— not a contract column (kept in attributes)"), *((c, c) for c in spec.known)]
            entries = []
            for i, name in enumerate(f.header):
                field_name = f"map-{f.kind}-{i}"
                self.fields[field_name] = forms.ChoiceField(
                    label=name or f"column {i + 1}", choices=choices, required=False,
                    initial=mapped.get(name) or (name if name in spec.known else ""))
                entries.append((name, field_name, name in f.suggested_mapping))
            self.columns.append((f.kind, entries))

    def mapping(self) -> dict:
        """``{kind: {file column: contract column}}`` for the columns read under another name."""
        out = {}
        for kind, entries in self.columns:
            chosen = {name: self.cleaned_data.get(field_name) or "" for name, field_name, _ in entries}
            out[kind] = {name: target for name, target in chosen.items() if target and target != name}
        return out

    def clean(self):
        data = super().clean()
        for kind, entries in self.columns:
            targets = [(data.get(field_name) or name, field_name) for name, field_name, _ in entries
                       if data.get(field_name) or name in imports.SPECS[kind].known]
            for target, field_name in targets:
                if sum(1 for t, _ in targets if t == target) > 1:
                    self.add_error(field_name, f"Another column of the {kind} file reads as {target} too.")
        return data

    def bound_columns(self):
        """[(kind, [(file column, bound field, suggested?)])] for the template."""
        return [(kind, [(name, self[field_name], suggested) for name, field_name, suggested in entries])
                for kind, entries in self.columns]


class _OwnerField(forms.ModelChoiceField):
    def label_from_instance(self, user):
        return user.get_full_name() or user.username


class CustomerForm(forms.Form):
    """A customer's profile as the pages edit it; crm.records.create_customer / update_customer write it.

    A plain form over the model's fields, not a ModelForm: a ModelForm copies the input onto the
    instance while validating, and the update service must compare the new owner with the stored
    one to apply the "a rep cannot hand a customer to another rep" rule.
    """

    FIELDS = ("external_id", "name", "email", "phone", "company", "country", "city", "signup_date", "no_profiling")
    NO_PROFILING_HELP = ("The customer objected to profiling. They get no segment, forecast or suggestions, "
                         "and their data is left out of model training.")

    def __init__(self, *args, owners, any_owner: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update(forms.fields_for_model(
            Customer, fields=self.FIELDS,
            labels={"external_id": "External id", "signup_date": "Customer since",
                    "no_profiling": "No profiling"},
            help_texts={"external_id": "The customer's key in the source system; imports match on it.",
                        "no_profiling": self.NO_PROFILING_HELP},
            widgets={"signup_date": forms.DateInput(attrs={"type": "date"})}))
        self.fields["owner"] = _OwnerField(
            label="Owner", queryset=owners, required=False, empty_label="Unassigned",
            help_text="The sales rep who looks after this customer." if any_owner else
            "Yourself, or unassigned: only a manager can give a customer to another rep.",
            error_messages={} if any_owner else {
                "invalid_choice": "You can keep this customer yourself or leave it unassigned; "
                                  "only a manager can give it to another rep."})
        self.fields["tags"] = forms.CharField(
            label="Tags", required=False, max_length=2000,
            widget=forms.TextInput(attrs={"list": "tag-names", "placeholder": "e.g. vip, trade fair 2026"}),
            help_text="Comma-separated; a new name creates the tag.")
        self.order_fields([*self.FIELDS[:-1], "owner", "tags", "no_profiling"])

    def clean_tags(self):  # a list of names; a name over the limit is the field's error
        return tags.clean_names(self.cleaned_data.get("tags") or "")

    @staticmethod
    def initial_for(customer) -> dict:
        return {**forms.model_to_dict(customer, fields=CustomerForm.FIELDS), "owner": customer.owner_id,
                "tags": ", ".join(tags.tag_names(customer))}


class ApiTokenForm(forms.Form):
    """A new API token on the account page; crm.tokens.create_token makes it."""

    name = forms.CharField(label="Name", max_length=100, required=False,
                           help_text="What it is for, e.g. the script that uses it.")
    scope = forms.ChoiceField(label="Scope", choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ_WRITE,
                              help_text="Read-only: every change is refused.")
    own_customers_only = forms.BooleanField(label="Only the customers I own", required=False,
                                            help_text="Even if your role sees more.")
    expires_in_days = forms.IntegerField(label="Expires in (days)", min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        days = self.fields["expires_in_days"]  # the settings as they are now, not when this module loaded
        days.initial = settings.API_TOKEN_DAYS
        days.validators.append(MaxValueValidator(settings.API_TOKEN_MAX_DAYS))
        days.widget.attrs["max"] = settings.API_TOKEN_MAX_DAYS
        days.help_text = f"At most {settings.API_TOKEN_MAX_DAYS}."


class _IdsField(forms.Field):
    """The selected rows' ids (checkboxes of one name): a list of ints."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        values = value if isinstance(value, list | tuple) else ([] if value in (None, "") else [value])
        try:
            ids = [int(v) for v in values]
        except (TypeError, ValueError):
            raise forms.ValidationError("Unknown customer selected.", code="invalid") from None
        if any(not 0 < i < 2**63 for i in ids):
            raise forms.ValidationError("Unknown customer selected.", code="invalid")
        return ids


class CustomerBulkForm(forms.Form):
    """The customer list's action bar (managers): the selected ids and what to do with them;
    crm.tags.bulk_* do it. ``owners``: crm.selectors.assignable_owners of the manager."""

    ACTIONS = (("assign", "Assign owner"), ("add_tag", "Add tag"), ("remove_tag", "Remove tag"))

    action = forms.ChoiceField(choices=ACTIONS)
    ids = _IdsField(required=False)
    tag = forms.CharField(label="Tag", required=False, max_length=200,
                          widget=forms.TextInput(attrs={"list": "tag-names", "placeholder": "existing or new"}))

    def __init__(self, *args, owners, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"] = _OwnerField(label="Owner", queryset=owners, required=False, empty_label="Choose…")
        self.order_fields(["action", "ids", "owner", "tag"])

    def clean(self):
        data = super().clean()
        if not data.get("ids") and "ids" not in self.errors:
            self.add_error("ids", "Select at least one customer.")
        if data.get("action") == "assign" and not data.get("owner"):
            self.add_error("owner", "Choose the owner to assign.")
        if data.get("action") in ("add_tag", "remove_tag"):
            try:
                names = tags.clean_names([data.get("tag") or ""])
            except forms.ValidationError as exc:
                self.add_error("tag", exc)
            else:
                if not names:
                    self.add_error("tag", "Name the tag.")
        return data
