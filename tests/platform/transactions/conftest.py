from tests.platform.inline_cluster import host_env

__all__ = ["host_env"]
