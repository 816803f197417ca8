"""The portal's pages, one module per area; all wrapped in `web.portal.portal_view`."""
