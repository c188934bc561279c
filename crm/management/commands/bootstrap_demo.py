"""``python manage.py bootstrap_demo``: demo users (credentials printed) and demo data when the database is empty."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand

from crm.models import ROLE_ADMIN, ROLE_MANAGER, ROLE_SALES_REP, Customer

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
        for username, password, role, superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"first_name": username.title()})
            if created:
                user.set_password(password)
                user.is_staff = superuser or role == ROLE_MANAGER
                user.is_superuser = superuser
                user.save()
            user.groups.add(Group.objects.get(name=role))
        seeded = False
        if not Customer.objects.exists():
            call_command("seed_demo", customers=options["customers"], stdout=self.stdout)
            seeded = True
        if options["train"] and seeded:
            call_command("retrain", kind="all", sync=True, stdout=self.stdout)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo users (change these passwords for real use):"))
        for username, password, role, _ in DEMO_USERS:
            self.stdout.write(f"  {role:10} {username:8} password: {password}")
