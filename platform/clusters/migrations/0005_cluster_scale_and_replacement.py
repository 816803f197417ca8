from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('clusters', '0004_cluster_restart_progress'),
    ]

    operations = [
        migrations.AddField(
            model_name='cluster',
            name='scale',
            field=models.JSONField(blank=True, default=dict, help_text='The latest growth of a Dedicated cluster: state (starting, reassigning, done, failed), broker counts from and to, partitions to move and moved, an error for the tenant'),
        ),
        migrations.AddField(
            model_name='cluster',
            name='replacement',
            field=models.JSONField(blank=True, default=dict, help_text='Brokers of a lost host being replaced on other hosts: state (waiting, replacing, blocked, done), the brokers and hosts, a reason for the tenant'),
        ),
    ]
