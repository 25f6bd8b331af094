"""DNS and TLS certificate checks against real local servers (a UDP DNS server, a TLS server
with certificates from a test CA)."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trustme

from pingtower.common.events import CheckJob, Outcome, utcnow
from pingtower.pinger.checks.base import CheckContext, CheckResult, get_check
from pingtower.pinger.domain.monitor import InvalidSettingError
from tests.e2e.harness import free_port
from tests.integration.pinger.servers import (
    dns_server,
    silent_udp_port,
    tls_server,
)

RECORDS = {
    ("status.example.test", "A"): ["192.0.2.10", "192.0.2.11"],
    ("example.test", "MX"): ["10 mail.example.test."],
    ("example.test", "TXT"): ['"v=spf1 -all"'],
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def context(ca: trustme.CA) -> CheckContext:
    tls = ssl.create_default_context()
    ca.configure_trust(tls)
    return CheckContext(allow_private=True, tls=tls)


def server_context(
    ca: trustme.CA, *names: str, not_after: datetime | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, not_after=not_after).configure_cert(context)
    return context


async def check(
    context: CheckContext, check_type: str, target: str, timeout: float = 2.0, **settings: Any
) -> CheckResult:
    now = utcnow()
    _, normalised = get_check(check_type).validate(target, settings)
    job = CheckJob(
        monitor_id=uuid.uuid4(),
        check_type=check_type,
        target=target,
        settings=normalised,
        timeout_seconds=timeout,
        scheduled_at=now,
        deadline=now + timedelta(seconds=60),
    )
    return await get_check(check_type).run(job, context)


async def test_dns_check_is_up_when_the_expected_records_are_there(
    context: CheckContext,
) -> None:
    async with dns_server(RECORDS) as resolver:
        result = await check(
            context, "dns", "status.example.test", resolver=resolver, expected=["192.0.2.11"]
        )
        mx = await check(
            context,
            "dns",
            "example.test",
            resolver=resolver,
            record_type="MX",
            expected=["10 mail.example.test"],
        )
        txt = await check(
            context,
            "dns",
            "example.test",
            resolver=resolver,
            record_type="TXT",
            expected=["v=spf1 -all"],
        )
    assert result.outcome == Outcome.UP
    assert mx.outcome == Outcome.UP
    assert txt.outcome == Outcome.UP


async def test_dns_check_is_down_when_a_value_is_missing(context: CheckContext) -> None:
    async with dns_server(RECORDS) as resolver:
        result = await check(
            context, "dns", "status.example.test", resolver=resolver, expected=["192.0.2.99"]
        )
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "assertion"
    assert "192.0.2.99" in (result.error_message or "")


async def test_dns_check_reports_a_name_that_does_not_exist(context: CheckContext) -> None:
    async with dns_server(RECORDS) as resolver:
        missing = await check(context, "dns", "nope.example.test", resolver=resolver)
        no_record = await check(
            context, "dns", "status.example.test", resolver=resolver, record_type="AAAA"
        )
    assert missing.error_kind == "dns"
    assert "NXDOMAIN" in (missing.error_message or "")
    assert no_record.error_kind == "dns"


async def test_dns_check_times_out_on_a_silent_resolver(context: CheckContext) -> None:
    async with silent_udp_port() as resolver:
        result = await check(context, "dns", "example.test", resolver=resolver, timeout=0.3)
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "timeout"


async def test_dns_check_refuses_a_private_resolver_when_not_allowed(
    context: CheckContext,
) -> None:
    private = CheckContext(allow_private=False)
    async with dns_server(RECORDS) as resolver:
        result = await check(private, "dns", "status.example.test", resolver=resolver)
    assert result.error_kind == "blocked"


def test_dns_settings_are_validated() -> None:
    with pytest.raises(InvalidSettingError) as error:
        get_check("dns").validate("example.test", {"resolver": "dns.google"})
    assert error.value.field == "settings.resolver"
    with pytest.raises(InvalidSettingError) as error:
        get_check("dns").validate("bad..name", {})
    assert error.value.field == "target"


async def test_tls_check_reports_the_expiry_of_a_valid_certificate(
    ca: trustme.CA, context: CheckContext
) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    async with tls_server(server_context(ca, "127.0.0.1", not_after=expires)) as port:
        result = await check(context, "tls", f"127.0.0.1:{port}")
    assert result.outcome == Outcome.UP, result.error_message
    assert result.cert_expires_at == expires


async def test_tls_check_is_degraded_when_expiry_is_near(
    ca: trustme.CA, context: CheckContext
) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    async with tls_server(server_context(ca, "127.0.0.1", not_after=soon)) as port:
        result = await check(context, "tls", f"127.0.0.1:{port}", warn_days=14)
    assert result.outcome == Outcome.DEGRADED
    assert result.error_kind == "cert_expiring"


async def test_tls_check_is_down_on_a_hostname_mismatch(
    ca: trustme.CA, context: CheckContext
) -> None:
    async with tls_server(server_context(ca, "other.example.test")) as port:
        result = await check(context, "tls", f"127.0.0.1:{port}")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "tls"


async def test_tls_check_is_down_on_an_untrusted_certificate(context: CheckContext) -> None:
    stranger = trustme.CA()
    async with tls_server(server_context(stranger, "127.0.0.1")) as port:
        result = await check(context, "tls", f"127.0.0.1:{port}")
    assert result.outcome == Outcome.DOWN
    assert result.error_kind == "tls"
    assert "rejected" in (result.error_message or "")


async def test_tls_check_reports_a_refused_connection(context: CheckContext) -> None:
    result = await check(context, "tls", f"127.0.0.1:{free_port()}")
    assert result.error_kind == "connect"
