"""``python manage.py erase_customer EXTERNAL_ID [--no-input]``: the right to erasure."""
from django.core.management.base import BaseCommand, CommandError

from crm import privacy
from crm.access import NotAllowed
from crm.management.commands.export_personal_data import _user
from crm.models import Customer


class Command(BaseCommand):
    help = ("Erase one customer's personal data: delete their interactions and their rows in every stored model "
            "run, blank the profile and leave it out of training, in one transaction. Cannot be undone.")

    def add_arguments(self, parser):
        parser.add_argument("external_id", help="the customer's external_id")
        parser.add_argument("--no-input", "--noinput", action="store_false", dest="interactive",
                            help="do not ask to confirm")
        parser.add_argument("--user", metavar="USERNAME", help="record the erasure as done by this manager or admin")

    def handle(self, *args, **options):
        customer = Customer.objects.filter(external_id=options["external_id"]).first()
        if customer is None:
            raise CommandError(f"no customer with external_id {options['external_id']!r}")
        user = _user(options["user"])
        if options["interactive"]:
            answer = input(f"Erase the personal data of customer {customer.pk} ({customer.external_id})? "
                           "This cannot be undone. Type the external_id again to confirm: ")
            if answer.strip() != customer.external_id:
                raise CommandError("not confirmed: nothing was erased")
        try:
            counts = privacy.erase_customer(user=user, customer=customer)
        except NotAllowed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Erased customer {customer.pk}: " + ", ".join(f"{n} {what}" for what, n in counts.items())
                          + " deleted; profile blanked and left out of training.")
