"""The portal keeps no tables of its own: invitations are accounts.models.Invitation."""
