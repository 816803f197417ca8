from tests.platform.schemaregistry.registry_cluster import host_env, running

__all__ = ["host_env", "running"]
