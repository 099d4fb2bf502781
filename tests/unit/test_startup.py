"""Start-up failures in the configuration's terms (lispd.startup), and ``lispd --check``'s look
at the host.  No root: binding an address this host does not have fails the same for anyone,
and a port in use is one this test holds itself on loopback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

import pytest

from lispd.config import load_config
from lispd.startup import StartupError, explain, host_warnings, opening, port_holder

# 192.0.2.250 is on no interface of the test host (documentation range).
CONFIG = """\
[daemon]
name = "xtr1"
roles = ["itr", "etr"]

[underlay]
rlocs = [
    "192.0.2.250",
]

[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.250" }]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "lispd.conf"
    path.write_text(CONFIG)
    return path


def test_an_rloc_not_on_the_host_names_file_line_key_value_and_fix(config_file: Path) -> None:
    config = load_config(config_file)
    addr = config.underlay.rlocs[0]
    with (
        pytest.raises(StartupError) as err,
        opening(config, ("underlay", "rlocs", 0), addr, "UDP 4342 on the RLOC"),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind((str(addr), 0))
    text = str(err.value)
    assert text.startswith(f"{config_file}:7: underlay.rlocs[0]: 192.0.2.250: "), text
    assert "not an address of this host" in text and "ip address add" in text
    assert err.value.errno == errno.EADDRNOTAVAIL


def test_a_port_in_use_names_the_process_that_holds_it(config_file: Path) -> None:
    config = load_config(config_file)
    loopback = ip_address("127.0.0.1")
    me = f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"
    key = ("underlay", "rlocs", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert port_holder(loopback, port) == me
        with (
            pytest.raises(StartupError) as err,
            opening(config, key, loopback, f"UDP {port}", holder=(loopback, port)),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        ):
            sock.bind(("127.0.0.1", port))
    assert f"UDP {port} is already in use by" in str(err.value)
    assert f"(pid {os.getpid()})" in str(err.value)


def test_a_default_value_is_located_at_its_table_or_the_file(config_file: Path) -> None:
    config = load_config(config_file)
    with pytest.raises(StartupError) as err, opening(config, ("tun", "name"), "lisp0", "the TUN"):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    # [tun] is not in the file at all: the file, the key, the value, the fix.
    assert str(err.value).startswith(f"{config_file}: tun.name: lisp0: permission denied")
    assert "CAP_NET_ADMIN" in str(err.value)
    assert explain(OSError(errno.ENOENT, ""), "the TUN device")[0] == "/dev/net/tun does not exist"


def test_check_warns_about_the_host_and_still_accepts_the_file(config_file: Path) -> None:
    warnings = host_warnings(load_config(config_file))
    assert any(
        w.startswith(f"{config_file}:7: underlay.rlocs[0]: 192.0.2.250: not an address")
        for w in warnings
    ), warnings
    run = subprocess.run(
        [sys.executable, "-m", "lispd", "--check", "-c", str(config_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert "configuration ok" in run.stdout
    assert f"lispd: warning: {config_file}:7: underlay.rlocs[0]: 192.0.2.250" in run.stderr
