"""What several control-plane apps share, below all of them.

- `kafka_admin`: the control plane's cached Kafka AdminClient per cluster (internal credential);
- `kafka_wire`: a small blocking Kafka-protocol connection for the requests AdminClient lacks;
- `files`: file locks and atomic writes;
- `envconf`: settings read from Django settings or the environment;
- `retry`: the backoff of task retries.

It imports no app of the control plane (only Django, `controlplane.errors` and the clients), so
every app may import it and no circle can pass through it. The clusters it talks to are any
object with a cluster's connection attributes (`kafka_admin.KafkaCluster`).
"""
