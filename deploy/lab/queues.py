"""The lab's SQS queues, one per subnet, created in moto before agents start.

Like deploy/aws/coordinator.yaml, each has a dead-letter queue
``<queue>-dlq`` that its redrive policy fills after ``MAX_RECEIVES``
receives, and that the coordinator drains (coordinator/deadletters.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import structlog

from deploy.lab import services
from deploy.lab.errors import ServiceError

log = structlog.get_logger(__name__)

MAX_RECEIVES = 5  # as on AWS: a few kills of an agent mid-chunk are not poison
DLQ_SUFFIX = "-dlq"
_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}
)


def create_queues(state_dir: Path, subnets: Sequence[str]) -> None:
    """Create ``segscan-<subnet>`` and its dead-letter queue for every subnet;
    raise ``ServiceError`` if not."""
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
            _create(client, services.queue_name(subnet))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ServiceError(
            services.MOTO,
            f"cannot create the lab's queues at {services.SQS_ENDPOINT}: {exc}",
            services.log_path(state_dir, services.MOTO),
        ) from exc
    finally:
        client.close()
    log.info("lab_queues_created", queues=len(subnets))


def _create(client: Any, name: str) -> None:
    dlq = client.create_queue(QueueName=name + DLQ_SUFFIX)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": arn["Attributes"]["QueueArn"],
        "maxReceiveCount": str(MAX_RECEIVES),
    }
    client.create_queue(
        QueueName=name, Attributes={"RedrivePolicy": json.dumps(redrive)}
    )
