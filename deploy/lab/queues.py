"""The lab's SQS queues, one per subnet, created in moto before agents start."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import botocore.config
import botocore.exceptions
import botocore.session
import structlog

from deploy.lab import services
from deploy.lab.errors import ServiceError

log = structlog.get_logger(__name__)

_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}
)


def create_queues(state_dir: Path, subnets: Sequence[str]) -> None:
    """Create ``segscan-<subnet>`` for every subnet; raise ``ServiceError`` if not."""
    client = botocore.session.get_session().create_client(
        "sqs",
        region_name=services.REGION,
        endpoint_url=services.SQS_ENDPOINT,
        aws_access_key_id=services.AWS_DUMMY_KEY,
        aws_secret_access_key=services.AWS_DUMMY_KEY,
        config=_CLIENT_CONFIG,
    )
    try:
        for subnet in subnets:
            client.create_queue(QueueName=services.queue_name(subnet))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ServiceError(
            services.MOTO,
            f"cannot create the lab's queues at {services.SQS_ENDPOINT}: {exc}",
            services.log_path(state_dir, services.MOTO),
        ) from exc
    finally:
        client.close()
    log.info("lab_queues_created", queues=len(subnets))
