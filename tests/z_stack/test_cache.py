"""The cache tier as the app hosts and the outside world see it."""
import pytest

from conftest import MANAGED  # noqa: F401  (same stack fixture)

ASK = ("python3 -c \"import socket,sys; s=socket.create_connection(('{addr}', {port}), timeout=5); "
       "s.sendall(sys.argv[1].encode() + b'\\r\\n'); print(s.recv(200).decode().strip())\" '{line}'")


@pytest.mark.parametrize("app", ["app1", "app2"])
def test_redis_answers_the_app_hosts_only_after_auth(stack, app):
    cache = stack.addresses()["cache1"]
    host = stack.host(app)
    assert host.check_output(ASK.format(addr=cache, port=6379, line="PING")).startswith("-NOAUTH")
    wrong = host.check_output(ASK.format(addr=cache, port=6379, line="AUTH app not-the-password"))
    assert wrong.startswith("-WRONGPASS"), wrong


def test_memcached_answers_the_app_hosts(stack):
    cache = stack.addresses()["cache1"]
    assert stack.host("app1").check_output(ASK.format(addr=cache, port=11211, line="version")).startswith("VERSION")


@pytest.mark.parametrize("port", [6379, 11211])
def test_cache_ports_are_closed_to_the_client_host(stack, port):
    probe = stack.host("client1").run(f"nc -z -w 3 {stack.addresses()['cache1']} {port}")
    assert probe.rc != 0, f"port {port} on cache1 answers the client host"


def test_cache_ports_are_closed_to_other_tiers(stack):
    """Only the app group is in the firewall rule: the edge host may not talk to Redis either."""
    edge = stack.host("edge1")
    result = edge.run("timeout 5 bash -c '</dev/tcp/%s/6379'" % stack.addresses()["cache1"])
    assert result.rc != 0
