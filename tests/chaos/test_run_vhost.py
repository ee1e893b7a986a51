"""tests/conftest.py makes each run's RabbitMQ vhost on the node LH_TEST_AMQP_URL names — here a second node of our
own beside the machine's — and never on the machine's default node."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import aio_pika
import httpx
import pytest

from tests.chaos.conftest import Servers
from tests.chaos.servers import RabbitNode, free_port
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


@pytest.fixture(scope="module")
def managed_node(servers: Servers) -> Iterator[RabbitNode]:
    """A second node of our own, with the management plugin on its own HTTP port (same user and password as the
    first, so that its API would accept the first node's URL's credentials)."""
    node = RabbitNode(
        servers.base / "rabbitmq-managed",
        name="lhchaosapi@localhost",
        password=servers.rabbit.password,
        management_port=free_port(),
    )
    try:
        node.start()
        yield node
    finally:
        node.stop()


def test_through_the_management_api_of_the_node_the_url_names(servers: Servers, managed_node: RabbitNode) -> None:
    api = f"http://127.0.0.1:{managed_node.management_port}"
    vhost = f"lhtest-{secrets.token_hex(4)}"
    made = create_run_vhost(managed_node.url, vhost, {"LH_TEST_RABBITMQ_API": api})
    assert (made.made_by, made.amqp_url) == (f"management API at {api}", f"{managed_node.url}/{vhost}")
    assert vhost in managed_node.ctl("list_vhosts").stdout.split()
    assert vhost not in servers.rabbit.ctl("list_vhosts").stdout.split()
    assert vhost not in _default_node_vhosts()
    permissions = managed_node.ctl("list_user_permissions", "lhchaos").stdout.split()
    assert vhost in permissions
    assert made.delete is not None
    made.delete()
    assert vhost not in managed_node.ctl("list_vhosts").stdout.split()


def test_a_management_api_of_another_node_is_not_used(servers: Servers, managed_node: RabbitNode) -> None:
    """The API answers, but for a node that does not listen on the URL's port: the vhost goes where the URL points
    (through rabbitmqctl -n), not to the node behind the API."""
    api = f"http://127.0.0.1:{managed_node.management_port}"
    vhost = f"lhtest-{secrets.token_hex(4)}"
    rabbit = servers.rabbit
    assert httpx.get(f"{api}/api/overview", auth=("lhchaos", rabbit.password), timeout=10).status_code == 200
    made = create_run_vhost(rabbit.url, vhost, {"LH_TEST_RABBITMQ_API": api, "LH_TEST_RABBITMQ_NODE": rabbit.name})
    try:
        assert made.made_by == f"rabbitmqctl -n {rabbit.name}"
        assert vhost in rabbit.ctl("list_vhosts").stdout.split()
        assert vhost not in managed_node.ctl("list_vhosts").stdout.split()
    finally:
        if made.delete is not None:
            made.delete()
