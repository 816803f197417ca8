"""Sans-IO Kafka protocol: framing helpers, the kio adapter and hand-written fast paths.

Nothing in this package imports asyncio or touches a socket.
"""
