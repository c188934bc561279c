"""Forms of the pages that read or act on the models' insights (the customer list's insight
filters and sorts, feedback on a suggestion, a retrain request); the others are in crm.forms."""
from datetime import datetime, time

from django import forms
from django.utils import timezone

from ml.customer_lists import CHURN_BANDS, CUSTOMER_ORDERINGS
from ml.models import Suggestion, SuggestionFeedback, TrainingRun

PAGE_SIZES = (25, 50, 100)


class CustomerFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False,
                        widget=forms.TextInput(attrs={"placeholder": "Name, email, company or external id",
                                                      "type": "search"}))
    segment = forms.TypedChoiceField(label="Segment", required=False, coerce=int, empty_value=None)
    owner = forms.ChoiceField(label="Owner", required=False)
    churn_band = forms.ChoiceField(label="Churn risk", required=False,
                                   choices=[("", "Any")] + [(k, label) for k, label, _lo, _hi in CHURN_BANDS])
    clv_min = forms.FloatField(label="CLV from", required=False, min_value=0)
    clv_max = forms.FloatField(label="CLV to", required=False, min_value=0)
    last_purchase_after = forms.DateField(label="Last purchase after", required=False,
                                          widget=forms.DateInput(attrs={"type": "date"}))
    last_purchase_before = forms.DateField(label="Last purchase before", required=False,
                                           widget=forms.DateInput(attrs={"type": "date"}))
    tag = forms.ChoiceField(label="Tag", required=False)
    sort = forms.ChoiceField(label="Sort", required=False, choices=[(k, k) for k in CUSTOMER_ORDERINGS])
    per_page = forms.TypedChoiceField(label="Per page", required=False, coerce=int, empty_value=PAGE_SIZES[0],
                                      choices=[(n, n) for n in PAGE_SIZES])

    def __init__(self, *args, segments=(), owners=(), tags=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = [("", "Any")] + [(name, name) for name in tags]
        self.fields["segment"].choices = [("", "Any")] + [(s.pk, s.name) for s in segments]
        self.fields["owner"].choices = ([("", "Anyone"), ("none", "Unassigned")]
                                        + [(str(u.pk), u.get_full_name() or u.username) for u in owners])

    def filters(self) -> dict:
        """The keyword arguments of ml.customer_lists.customer_list (invalid values are ignored)."""
        data = self.cleaned_data if self.is_valid() else {
            k: v for k, v in getattr(self, "cleaned_data", {}).items() if k not in self.errors}
        def start_of(day):
            return timezone.make_aware(datetime.combine(day, time.min)) if day else None

        return {"q": data.get("q") or "", "segment": data.get("segment"), "owner": data.get("owner") or None,
                "churn_band": data.get("churn_band") or "", "clv_min": data.get("clv_min"),
                "clv_max": data.get("clv_max"), "last_purchase_before": start_of(data.get("last_purchase_before")),
                "last_purchase_after": start_of(data.get("last_purchase_after")), "tag": data.get("tag") or "",
                "ordering": data.get("sort") or "name"}


class FeedbackForm(forms.Form):
    product = forms.IntegerField(widget=forms.HiddenInput)
    kind = forms.ChoiceField(choices=Suggestion.Kind.choices, widget=forms.HiddenInput)
    status = forms.ChoiceField(label="Mark as", choices=SuggestionFeedback.Status.choices)


class RetrainForm(forms.Form):
    kind = forms.ChoiceField(choices=TrainingRun.Kind.choices)


class FunnelPeriodForm(forms.Form):
    """The Models page's period for the suggestion funnel (default: ml.funnel.default_period)."""

    funnel_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    funnel_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        first, last = data.get("funnel_from"), data.get("funnel_to")
        if first and last and first > last:
            self.add_error("funnel_to", "The end of the period must not be before its start.")
        return data

    def period(self, default: tuple) -> tuple:
        """(first day, last day): the chosen days, the default's where none (or an invalid one) was given."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return data.get("funnel_from") or default[0], data.get("funnel_to") or default[1]
