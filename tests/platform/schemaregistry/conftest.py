from tests.platform.inline_cluster import host_env
from tests.platform.schemaregistry.registry_cluster import running

__all__ = ["host_env", "running"]
