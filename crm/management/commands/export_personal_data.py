"""``python manage.py export_personal_data EXTERNAL_ID [--output FILE]``: everything stored about a customer."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from crm import privacy
from crm.access import NotAllowed
from crm.models import Customer


class Command(BaseCommand):
    help = ("Write everything stored about one customer (profile, interactions, insights of every stored model "
            "run, audit events) as one JSON document: the answer to a right-of-access request.")

    def add_arguments(self, parser):
        parser.add_argument("external_id", help="the customer's external_id")
        parser.add_argument("--output", metavar="FILE", help="write here instead of standard output")
        parser.add_argument("--user", metavar="USERNAME", help="record the export as done by this manager or admin")

    def handle(self, *args, **options):
        customer = Customer.objects.filter(external_id=options["external_id"]).first()
        if customer is None:
            raise CommandError(f"no customer with external_id {options['external_id']!r}")
        user = _user(options["user"])
        try:
            document = privacy.to_json(privacy.export_personal_data(user=user, customer=customer))
        except NotAllowed as exc:
            raise CommandError(str(exc)) from None
        if options["output"]:
            with open(options["output"], "wb") as f:
                f.write(document)
            self.stderr.write(f"Wrote the personal data of customer {customer.pk} to {options['output']}")
        else:
            self.stdout.write(document.decode("utf-8"))


def _user(username):
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user
