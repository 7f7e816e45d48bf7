"""What a user checks on the cache tier: from a client host, and on the cache host.

The test passwords and limits are read from converge.yml, so the two never drift.
"""
import os
import re
import time
from pathlib import Path

import pytest
import testinfra
import yaml

CONVERGE = yaml.safe_load((Path(__file__).resolve().parent.parent / "converge.yml").read_text())[0]["vars"]
APP_USER, APP_PASSWORD = "app", CONVERGE["redis_app_password"]
ADMIN_USER, ADMIN_PASSWORD = "admin", CONVERGE["redis_admin_password"]
MAXMEMORY = 32 * 1024 * 1024
assert CONVERGE["redis_maxmemory"] == "32mb"
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]


def _only_host(group):
    hosts = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=INVENTORY)
    assert len(hosts) == 1, f"expected one host in group {group}"
    return hosts[0]


@pytest.fixture(scope="module")
def cache():
    return _only_host("cache")


@pytest.fixture(scope="module")
def client():
    return _only_host("client")


@pytest.fixture(scope="module")
def address(cache):
    """The cache host's private address (the one its clients use)."""
    route = cache.check_output("ip -4 -o route get 192.0.2.1")
    return re.search(r"\bsrc (\S+)", route).group(1)


def redis(client, address, *command, user=None, password=None):
    """redis-cli from the client; returns the reply text (errors included)."""
    env = f"REDISCLI_AUTH='{password}' " if password is not None else ""
    who = f"--user {user} " if user else ""
    quoted = " ".join(f"'{c}'" for c in command)
    result = client.run(f"{env}timeout 10 redis-cli --no-auth-warning -h {address} -p 6379 {who}{quoted}")
    return (result.stdout + result.stderr).strip()


def app(client, address, *command):
    return redis(client, address, *command, user=APP_USER, password=APP_PASSWORD)


def admin(client, address, *command):
    return redis(client, address, *command, user=ADMIN_USER, password=ADMIN_PASSWORD)


def info(client, address, section):
    out = admin(client, address, "INFO", section)
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line and not line.startswith("#"))


def listening(host, port, proto="t"):
    out = host.check_output(f"ss -H -{proto}ln 'sport = :{port}'")
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


# --- Redis ---------------------------------------------------------------

def test_redis_requires_auth(client, address):
    assert redis(client, address, "PING").startswith("NOAUTH")
    assert app(client, address, "PING") == "PONG"
    assert admin(client, address, "PING") == "PONG"


def test_default_user_is_refused(client, address):
    # A password alone (legacy AUTH) is the default user: disabled.
    assert "WRONGPASS" in redis(client, address, "PING", user="default", password="anything")
    assert "WRONGPASS" in redis(client, address, "AUTH", "anything")
    assert "WRONGPASS" in redis(client, address, "PING", user="default", password=ADMIN_PASSWORD)
    assert "WRONGPASS" in redis(client, address, "PING", user=APP_USER, password=ADMIN_PASSWORD)


def test_app_user_works_but_not_dangerous_commands(client, address):
    assert app(client, address, "SET", "probe:app", "1") == "OK"
    assert app(client, address, "GET", "probe:app") == "1"
    for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"],
                    ["SHUTDOWN", "NOSAVE"], ["MONITOR"]):
        assert "NOPERM" in app(client, address, *command), command
    # DEBUG is off for everyone (enable-debug-command no), and the ACL denies it too.
    assert "DEBUG command not allowed" in app(client, address, "DEBUG", "SLEEP", "0")
    assert "no permissions" in admin(client, address, "ACL", "DRYRUN", APP_USER, "DEBUG", "SLEEP", "0")
    assert admin(client, address, "ACL", "DRYRUN", APP_USER, "SET", "k", "v") == "OK"
    # Still there: FLUSHALL really was refused.
    assert app(client, address, "GET", "probe:app") == "1"
    # The admin may.
    assert admin(client, address, "CONFIG", "GET", "maxmemory").splitlines() == ["maxmemory", str(MAXMEMORY)]


def test_redis_binds_private_address_and_loopback_only(cache, address):
    assert listening(cache, 6379) == {address, "127.0.0.1"}


def test_redis_config_files(cache):
    for path in ("/etc/redis/redis.conf", "/etc/redis/users.acl"):
        f = cache.file(path)
        assert (f.user, f.group, f.mode) == ("redis", "redis", 0o640), path
    acl = cache.file("/etc/redis/users.acl").content_string
    assert APP_PASSWORD not in acl and ADMIN_PASSWORD not in acl
    assert "user default off" in acl
    dropin = cache.file("/etc/systemd/system/redis-server.service.d/50-container.conf")
    assert "PrivateUsers=false" in dropin.content_string
    # The rest of Debian's sandbox is still on.
    assert cache.check_output("systemctl show -p ProtectSystem --value redis-server") in ("full", "yes", "strict")
    assert cache.check_output("systemctl show -p NoNewPrivileges --value redis-server") == "yes"
    assert cache.service("redis-server").is_enabled


def test_key_survives_restart_with_aof(cache, client, address):
    assert admin(client, address, "CONFIG", "GET", "appendonly").splitlines() == ["appendonly", "yes"]
    assert app(client, address, "SET", "probe:durable", "kept") == "OK"
    cache.check_output("systemctl restart redis-server")
    for _ in range(30):
        if app(client, address, "PING") == "PONG":
            break
        time.sleep(1)
    assert app(client, address, "GET", "probe:durable") == "kept"


def test_cache_mode_evicts_within_maxmemory(client, address):
    memory = info(client, address, "memory")
    assert memory["maxmemory_policy"] == "allkeys-lru"
    assert int(memory["maxmemory"]) == MAXMEMORY
    # ~200 MB of writes into 32 MB, bounded in time.
    client.run(f"timeout 30 redis-benchmark -h {address} -p 6379 --user {APP_USER} -a '{APP_PASSWORD}' "
               "-n 200000 -d 1000 -t set -r 1000000 -c 20 -P 16 -q")
    stats = info(client, address, "stats")
    memory = info(client, address, "memory")
    assert int(stats["evicted_keys"]) > 0
    assert int(memory["used_memory"]) <= MAXMEMORY
    keyspace = info(client, address, "keyspace")
    assert "db0" in keyspace


# --- memcached -----------------------------------------------------------

def memcached_stats_settings(client, address):
    out = client.check_output(f"printf 'stats settings\\r\\nquit\\r\\n' | timeout 10 nc -w 3 {address} 11211")
    return dict(line.split()[1:3] for line in out.splitlines() if line.startswith("STAT "))


def test_memcached_answers_over_tcp_with_configured_limits(client, address):
    settings = memcached_stats_settings(client, address)
    assert settings["maxbytes"] == str(CONVERGE["memcached_memory_mb"] * 1024 * 1024)
    assert settings["maxconns"] == str(CONVERGE["memcached_max_connections"])
    assert settings["tcpport"] == "11211"
    assert settings["udpport"] == "0"


def test_memcached_binds_private_address_and_loopback_only(cache, address):
    assert listening(cache, 11211) == {address, "127.0.0.1"}


def test_memcached_udp_is_off(cache, client, address):
    assert listening(cache, 11211, proto="u") == set()
    # A well-formed UDP request (8-byte frame header + "stats") gets no answer.
    reply = client.run(
        f"printf '\\000\\001\\000\\000\\000\\001\\000\\000stats\\r\\n' | timeout 10 nc -u -w 3 {address} 11211")
    assert reply.stdout == ""
