import socket

import pytest

from sovforge.offline import NetworkBlocked, enforce_offline, guard_active, release_guard


def test_offline_env_is_set():
    import os

    enforce_offline()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK"):
        assert os.environ[key] == "1"


def test_non_loopback_connection_is_refused_naming_the_host():
    enforce_offline()
    assert guard_active()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlocked, match="203.0.113.7"):
            sock.connect(("203.0.113.7", 443))
    finally:
        sock.close()
    with pytest.raises(NetworkBlocked, match="huggingface.co"):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("198.51.100.1", 80), timeout=1)


def test_loopback_stays_open():
    enforce_offline()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def test_transformers_hub_access_is_refused(tmp_path):
    from transformers import AutoTokenizer

    enforce_offline()
    with pytest.raises(Exception):
        AutoTokenizer.from_pretrained("bert-base-uncased", cache_dir=str(tmp_path))


def test_allow_network_releases_the_guard():
    enforce_offline(allow_network=True)
    assert not guard_active()
    enforce_offline()
    assert guard_active()
    release_guard()
    enforce_offline()
