"""The local lab: network namespaces standing in for AWS VPCs, with workloads,
SQS (moto), the coordinator and one agent per subnet (``segscan-lab``)."""
