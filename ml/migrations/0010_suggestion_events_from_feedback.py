"""Each stored suggestion feedback becomes the first event of its funnel.

Before the funnel only the current status was kept, overwritten at each mark: the status
becomes one event at the time it was set (updated_at), by whom and on which run; the earlier
marks it overwrote are not known.
"""
from django.db import migrations

BATCH = 5000  # rows per insert: bounded memory on a large history


def feedback_to_events(apps, schema_editor):
    Feedback = apps.get_model("ml", "SuggestionFeedback")
    Event = apps.get_model("ml", "SuggestionEvent")
    rows = (Feedback.objects.order_by("pk")
            .values_list("customer_id", "product_id", "kind", "status", "updated_at", "user_id", "run_id"))
    batch = []
    for customer_id, product_id, kind, status, at, user_id, run_id in rows.iterator(chunk_size=BATCH):
        batch.append(Event(customer_id=customer_id, product_id=product_id, kind=kind, event=status, at=at,
                           user_id=user_id, run_id=run_id))
        if len(batch) >= BATCH:
            Event.objects.bulk_create(batch)
            batch = []
    Event.objects.bulk_create(batch)


def events_to_nothing(apps, schema_editor):
    apps.get_model("ml", "SuggestionEvent").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("ml", "0009_suggestion_funnel_and_control")]
    operations = [migrations.RunPython(feedback_to_events, events_to_nothing)]
