"""Create the three role groups and give them their model permissions."""
from django.db import migrations

ROLES = {
    "sales rep": {"crm": ["view_customer", "change_customer", "view_product", "view_interaction",
                          "add_interaction", "change_interaction"]},
    "manager": {"crm": ["view_customer", "add_customer", "change_customer", "view_product", "add_product",
                        "change_product", "view_interaction", "add_interaction", "change_interaction",
                        "view_importrun", "add_importrun", "view_importfile"]},
    "admin": {"crm": ["*"]},
}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, grants in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, codenames in grants.items():
            perms = Permission.objects.filter(content_type__app_label=app_label)
            if codenames != ["*"]:
                perms = perms.filter(codename__in=codenames)
            group.permissions.add(*perms)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
