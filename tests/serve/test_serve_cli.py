"""`facegan serve` on the command line: configuration errors, the default model, what it prints."""
import errno
import socket

import pytest

import facegan.settings
from facegan.cli import main
from facegan.serve.server import bind_error, exposure_warning, page_url


def test_without_a_shipped_model_serve_says_what_to_pass(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(facegan.settings, "PRETRAINED_DIR", tmp_path)
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("facegan serve: error:") and "ships no default model" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("args,message", [(["--port", "70000"], "--port must be within 0..65535"),
                                          (["--host", ""], "--host must not be empty")])
def test_bad_options_give_one_line_errors(trained_run, capsys, args, message):
    assert main(["serve", "--checkpoint", str(trained_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_taken_port_is_a_clear_error(trained_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(trained_run), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error == f"facegan serve: error: --port {port}: already in use on 127.0.0.1 (another server?); " \
                    "pick another, or --port 0 for any free one\n"


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1", "no-such-host.invalid", "a" * 70 + ".example"])
def test_a_host_it_cannot_listen_on_is_one_clear_line(trained_run, capsys, host):
    assert main(["serve", "--checkpoint", str(trained_run), "--host", host, "--port", "0"]) == 2
    assert capsys.readouterr().err == \
        f"facegan serve: error: --host {host}: not an address or host name this machine can listen on\n"


def test_other_bind_errors_name_the_port_without_errno_codes():
    denied = bind_error("127.0.0.1", 80, PermissionError(errno.EACCES, "Permission denied"))
    assert denied.startswith("--port 80: this user may not listen on it") and "Errno" not in denied
    other = bind_error("127.0.0.1", 7860, OSError(errno.ENOBUFS, "No buffer space available"))
    assert other == "cannot listen on 127.0.0.1 port 7860: no buffer space available"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_warning(host):
    assert exposure_warning(host, 7860) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myhost.example"])
def test_other_hosts_are_warned_about(host):
    warning = exposure_warning(host, 7860)
    assert warning.startswith("warning:") and host in warning and "--host 127.0.0.1" in warning


@pytest.mark.parametrize("host,url", [("127.0.0.1", "http://127.0.0.1:7860/"), ("0.0.0.0", "http://127.0.0.1:7860/"),
                                      ("::1", "http://[::1]:7860/"), ("localhost", "http://localhost:7860/")])
def test_the_printed_url_opens_in_a_browser(host, url):
    assert page_url(host, 7860) == url
