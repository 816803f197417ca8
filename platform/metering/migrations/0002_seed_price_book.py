"""Seed the price book with the default prices (operators edit them in the Django admin)."""

from django.db import migrations


def seed(apps, schema_editor):
    from metering.pricing import DEFAULT_PRICES, PRICE_FIELDS

    PriceBook = apps.get_model("metering", "PriceBook")
    for plan, prices in DEFAULT_PRICES.items():
        PriceBook.objects.get_or_create(
            plan=plan,
            effective_from=prices.effective_from,
            defaults={f: getattr(prices, f) for f in PRICE_FIELDS},
        )


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
