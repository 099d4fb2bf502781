"""The ``lispd`` command line: --check, decode, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def lispd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lispd", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_check_accepts_the_example() -> None:
    proc = lispd("--check", "-c", "lispd.conf.example")
    assert proc.returncode == 0, proc.stderr
    assert "configuration ok" in proc.stdout


def test_check_refuses_a_bad_file_with_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text('[daemon]\nroles = ["itr"]\nlog-level = "loud"\n')
    proc = lispd("--check", "-c", str(conf))
    assert proc.returncode == 1
    assert f"{conf}:3: daemon.log-level:" in proc.stderr


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    proc = lispd("--check", "-c", str(tmp_path / "absent.conf"))
    assert proc.returncode == 1 and "absent.conf" in proc.stderr


def test_decode_hex_map_request() -> None:
    hexmsg = (
        "10000001" "0102030405060708" "0000" "0001c0000201" "0018" "0001c6336400"
    )  # fmt: skip
    proc = lispd("decode", hexmsg)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["layer"] == "control"
    msg = obj["message"]
    assert msg["type"] == "MapRequest" and msg["nonce"] == "0x0102030405060708"
    assert msg["itr_rlocs"] == ["192.0.2.1"]
    assert msg["records"][0]["address"] == "198.51.100.0" and msg["records"][0]["mask_len"] == 24


def test_decode_reports_malformed_input_reason() -> None:
    proc = lispd("decode", "1000000101020304")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["error"] == "truncated"
    assert json.loads(lispd("decode", "zz").stdout)["error"] == "bad-hex"


def test_decode_reads_stdin_and_data_headers() -> None:
    proc = lispd("decode", "--as", "data", stdin="8800000100000700\n")
    obj = json.loads(proc.stdout)
    assert obj["message"]["instance_id"] == 7 and obj["message"]["nonce_present"] is True
