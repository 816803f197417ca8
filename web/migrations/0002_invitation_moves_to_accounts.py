# Invitations are domain state: the model moves to accounts (its table is renamed, rows kept).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("web", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.AlterModelTable("invitation", "accounts_invitation")],
            state_operations=[migrations.DeleteModel("Invitation")],
        ),
    ]
