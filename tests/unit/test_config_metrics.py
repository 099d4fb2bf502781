"""Unit tests of lispd.config for ``[metrics]``: the Prometheus endpoint's listen address."""

from __future__ import annotations

import ipaddress

import pytest

from lispd.config import ROOT, Config, MetricsConfig, key_paths, load_config, parse_config
from tests.unit.test_config import BASE, EXAMPLE, EXAMPLE_MSMR, MSMR, error_of

ip = ipaddress.ip_address

# BASE has 9 lines and ends with a newline: [metrics] is line 10, listen line 11.
LISTEN_LINE = 11


def metrics(listen: str) -> str:
    """BASE with a ``[metrics]`` table whose ``listen`` is the TOML value ``listen``."""
    return BASE + f"[metrics]\nlisten = {listen}\n"


def check_error(text: str, key_path: str, line: int | None, fragment: str) -> None:
    """Parsing ``text`` fails at ``key_path`` on ``line`` with ``fragment`` in the message."""
    err = error_of(text)
    assert (err.key_path, err.line) == (key_path, line), err
    assert fragment in err.message, err
    assert str(err) == f"test.conf:{line}: {key_path}: {err.message}"


def test_listen_is_in_the_schema() -> None:
    assert ("metrics", "listen") in set(key_paths(ROOT))


def test_absent_table_means_no_endpoint() -> None:
    assert parse_config(BASE).metrics is None
    assert parse_config(MSMR).metrics is None
    config = parse_config(BASE)
    assert Config(daemon=config.daemon, tun=config.tun, underlay=config.underlay).metrics is None


@pytest.mark.parametrize(
    ("listen", "address", "port", "text"),
    [
        ("127.0.0.1:9342", "127.0.0.1", 9342, "127.0.0.1:9342"),
        ("[::1]:9342", "::1", 9342, "[::1]:9342"),
        ("0.0.0.0:1", "0.0.0.0", 1, "0.0.0.0:1"),
        ("[::]:65535", "::", 65535, "[::]:65535"),
        ("192.0.2.2:80", "192.0.2.2", 80, "192.0.2.2:80"),
        ("[2001:DB8::0:1]:9100", "2001:db8::1", 9100, "[2001:db8::1]:9100"),
        (" 127.0.0.1:9342 ", "127.0.0.1", 9342, "127.0.0.1:9342"),
    ],
)
def test_listen_accepted(listen: str, address: str, port: int, text: str) -> None:
    config = parse_config(metrics(f'"{listen}"'))
    assert config.metrics == MetricsConfig(address=ip(address), port=port)
    assert config.metrics.listen == text


def test_metrics_with_any_role() -> None:
    config = parse_config(MSMR + '\n[metrics]\nlisten = "[::1]:9342"\n')
    assert config.metrics == MetricsConfig(ip("::1"), 9342)


def test_examples_have_an_endpoint() -> None:
    assert load_config(EXAMPLE).metrics == MetricsConfig(ip("127.0.0.1"), 9342)
    assert load_config(EXAMPLE_MSMR).metrics == MetricsConfig(ip("::1"), 9342)


def test_model_is_frozen_and_comparable() -> None:
    one = parse_config(metrics('"127.0.0.1:9342"'))
    assert one == parse_config(metrics('"127.0.0.1:9342"'))
    assert one != parse_config(metrics('"127.0.0.1:9343"'))
    assert hash(one.metrics) == hash(MetricsConfig(ip("127.0.0.1"), 9342))
    with pytest.raises(AttributeError):
        one.metrics.port = 1  # type: ignore[misc, union-attr]


@pytest.mark.parametrize(
    ("listen", "fragment"),
    [
        ('"127.0.0.1"', "'127.0.0.1' has no port; write e.g. '127.0.0.1:9342'"),
        ('"::1"', "'::1' has no port; write e.g. '[::1]:9342'"),
        ('"[::1]"', "'[::1]' has no port; write e.g. '[::1]:9342'"),
        ('"::1:9342"', "is ambiguous: write an IPv6 address in brackets, e.g. '[::1]:9342'"),
        ('"2001:db8::1:80"', "e.g. '[2001:db8::1]:80'"),
        ('"[::1:9342"', "has no closing ']'"),
        ('"[127.0.0.1]:9342"', "brackets are for IPv6 only; write '127.0.0.1:9342'"),
        ('"localhost:9342"', "'localhost' is not an IP address (host names are not resolved)"),
        ('"127.0.0.1:0"', "the port must be from 1 to 65535, got '0'"),
        ('"127.0.0.1:65536"', "the port must be from 1 to 65535, got '65536'"),
        ('"127.0.0.1:http"', "the port must be from 1 to 65535, got 'http'"),
        ('"127.0.0.1:+80"', "the port must be from 1 to 65535, got '+80'"),
        ('"127.0.0.1:"', "the port must be from 1 to 65535, got ''"),
        ('"[::1]:99999999"', "the port must be from 1 to 65535"),
        ('"224.0.0.1:9342"', "224.0.0.1 is not a unicast address to listen on"),
        ('"[ff02::1]:9342"', "ff02::1 is not a unicast address to listen on"),
        ('"255.255.255.255:9342"', "is not a unicast address to listen on"),
        ('"[fe80::1%eth0]:9342"', "zone indexes (%eth0) are not supported"),
        ('""', "'' is not 'address:port'; write e.g. '127.0.0.1:9342'"),
        ("9342", "must be an 'address:port' string like '127.0.0.1:9342', not an integer"),
        ('["127.0.0.1:9342"]', "not an array"),
    ],
)
def test_bad_listen_refused_with_file_line_and_key(listen: str, fragment: str) -> None:
    check_error(metrics(listen), "metrics.listen", LISTEN_LINE, fragment)


def test_listen_is_required_in_the_table() -> None:
    check_error(BASE + "[metrics]\n", "metrics.listen", 10, "required key is missing")


def test_unknown_key_in_metrics() -> None:
    text = BASE + '[metrics]\nlisten = "127.0.0.1:9342"\nport = 9342\n'
    check_error(text, "metrics.port", 12, "unknown key 'port' (allowed in metrics: listen)")


def test_metrics_must_be_a_table() -> None:
    check_error('metrics = "127.0.0.1:9342"\n' + BASE, "metrics", 1, "must be a table")
