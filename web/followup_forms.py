"""Forms of the follow-up pages (web.views.followups): plan one, complete one, reassign one, filter the list.

Labels avoid "Type", "Notes" and "Save": the customer page's log form uses those and the browser
tests find fields by (partial) label."""
from django import forms

from crm.followups import PRESETS, preset_due
from crm.models import FollowUp

PRESET_LABELS = {"today": "Today", "tomorrow": "Tomorrow", "next_week": "Next week"}


class FollowUpForm(forms.Form):
    type = forms.ChoiceField(label="Follow-up kind", choices=FollowUp.Type.choices, initial=FollowUp.Type.CALL)
    due = forms.ChoiceField(label="When", choices=[(p, PRESET_LABELS[p]) for p in PRESETS] + [("at", "On…")],
                            initial="today")
    due_at = forms.DateTimeField(label="On (date and time)", required=False,
                                 widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    note = forms.CharField(label="What to do", required=False, max_length=FollowUp._meta.get_field("note").max_length)
    product = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    kind = forms.ChoiceField(required=False, choices=[("", "")] + FollowUp.SuggestionKind.choices,
                             widget=forms.HiddenInput)
    reason = forms.CharField(required=False, max_length=FollowUp._meta.get_field("reason").max_length,
                             widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        if data.get("due") == "at":
            if not data.get("due_at"):
                self.add_error("due_at", "Give the date and time, or pick Today, Tomorrow or Next week.")
        elif data.get("due"):
            data["due_at"] = preset_due(data["due"])
        return data


class CompleteForm(forms.Form):
    outcome = forms.CharField(label="Outcome", required=False, max_length=2000)


class ReassignForm(forms.Form):
    owner = forms.ModelChoiceField(label="Give to", queryset=None)

    def __init__(self, *args, owners, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = owners


class FollowUpFilterForm(forms.Form):
    scope = forms.ChoiceField(label="Whose", required=False, choices=[("mine", "Mine"), ("team", "Team")])
    status = forms.ChoiceField(label="Status", required=False,
                               choices=[("open", "Open"), ("done", "Done"), ("cancelled", "Cancelled"), ("all", "All")])
    overdue = forms.BooleanField(label="Overdue only", required=False)
