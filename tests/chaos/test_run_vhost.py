"""tests/conftest.py makes each run's RabbitMQ vhost on the node LH_TEST_AMQP_URL names — here a second node of our
own beside the machine's — and never on the machine's default node."""

from __future__ import annotations

import secrets
import subprocess

import aio_pika
import pytest

from tests.chaos.conftest import Servers
from tests.conftest import create_run_vhost

pytestmark = pytest.mark.chaos


def _default_node_vhosts() -> list[str]:
    listed = subprocess.run(["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60)
    return listed.stdout.split()


async def test_the_vhost_is_made_on_the_node_the_url_names_and_removed_after(servers: Servers) -> None:
    rabbit = servers.rabbit
    vhost = f"lhtest-{secrets.token_hex(4)}"
    made = create_run_vhost(rabbit.url, vhost, {"LH_TEST_RABBITMQ_NODE": rabbit.name})
    assert made.made_by == f"rabbitmqctl -n {rabbit.name}"
    assert made.amqp_url == f"{rabbit.url}/{vhost}"
    assert vhost in rabbit.ctl("list_vhosts").stdout.split()
    assert vhost not in _default_node_vhosts()
    # The URL the run gets works: a message goes through a queue in that vhost.
    connection = await aio_pika.connect_robust(made.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("vhost-check", auto_delete=True)
        await channel.default_exchange.publish(aio_pika.Message(b"here"), routing_key="vhost-check")
        message = await queue.get(timeout=10)
        assert message.body == b"here"
        await message.ack()
    assert made.delete is not None
    made.delete()
    assert vhost not in rabbit.ctl("list_vhosts").stdout.split()


def test_without_a_way_to_that_node_the_run_uses_the_urls_vhost_and_says_so(servers: Servers) -> None:
    """No management API and no LH_TEST_RABBITMQ_NODE: the machine's default node does not listen on this URL's port,
    so nothing is made there; the run falls back to the URL as given (its bus namespace keeps it apart)."""
    rabbit = servers.rabbit
    vhost = f"lhtest-{secrets.token_hex(4)}"
    with pytest.warns(UserWarning, match="could not create a RabbitMQ vhost"):
        made = create_run_vhost(rabbit.url, vhost, {})
    assert (made.amqp_url, made.made_by, made.delete) == (rabbit.url, "", None)
    assert vhost not in _default_node_vhosts()
    assert vhost not in rabbit.ctl("list_vhosts").stdout.split()
