"""``python manage.py bootstrap_demo``: demo users (credentials printed) and demo data when the database is empty.

The demo admin and manager must have a second factor like any admin and manager (crm.second_factor):
each gets a confirmed authenticator whose secret is printed with the passwords, to add to an
authenticator app (or to read codes with ``oathtool --totp -b SECRET``). The sales rep has none.
"""
from base64 import b32encode

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_otp.plugins.otp_totp.models import TOTPDevice

from crm import second_factor
from crm.models import ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES_REP, Customer

DEMO_DEVICE = "demo authenticator"

DEMO_USERS = (
    # username, password, role, superuser
    ("admin", "admin-demo-2026", ROLE_ADMIN, True),
    ("manager", "manager-demo-2026", ROLE_MANAGER, False),
    ("alice", "alice-demo-2026", ROLE_SALES_REP, False),
)


class Command(BaseCommand):
    help = "Create the demo admin, manager and sales rep, and seed demo data if there are no customers yet."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=2000)
        parser.add_argument("--train", action="store_true", help="retrain all models after seeding")

    def handle(self, *args, **options):
        User = get_user_model()
        demo_secrets = {}
        for username, password, role, superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"first_name": username.title()})
            if created:
                user.set_password(password)
                user.is_staff = superuser  # only admins have the Django admin (README, "Pages")
                user.is_superuser = superuser
                user.save()
            user.groups.add(Group.objects.get(name=role))
            if second_factor.required(user):
                demo_secrets[username] = self._demo_secret(user)
        seeded = False
        if not Customer.objects.exists():
            call_command("seed_demo", customers=options["customers"], stdout=self.stdout)
            seeded = True
        if options["train"] and seeded:
            call_command("retrain", kind="all", sync=True, stdout=self.stdout)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo users (change these passwords for real use):"))
        for username, password, role, _ in DEMO_USERS:
            line = f"  {role:10} {username:8} password: {password}"
            if username in demo_secrets:
                line += f"  authenticator secret: {demo_secrets[username]}"
            self.stdout.write(line)
        if demo_secrets:
            self.stdout.write("The admin and the manager need a code too: add their secret to an authenticator app "
                              "(time-based, 6 digits), or run `oathtool --totp -b SECRET`.")

    @staticmethod
    def _demo_secret(user) -> str:
        """The secret of the user's demo authenticator, made now if they have no authenticator; or a note
        if they set up their own on the account page (its secret is theirs, not printed)."""
        device = second_factor.authenticator(user)
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=DEMO_DEVICE, confirmed=True)
        if device.name != DEMO_DEVICE:
            return "(their own, set up on the account page)"
        return b32encode(device.bin_key).decode()
