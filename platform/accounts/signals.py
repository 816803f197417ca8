"""Signals other apps connect to, so that accounts depends on none of them."""

from django.dispatch import Signal

#: Sent inside the sign-up transaction, once the organization and its owner exist (metering
#: grants the trial credit). kwargs: organization (accounts.Organization).
organization_created = Signal()
