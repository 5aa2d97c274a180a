"""EPM authentication against the fake identity domain and pod."""

from __future__ import annotations

import asyncio
import logging
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from epm.auth import (
    BasicAuth,
    ClientCredentialsAuth,
    DeviceAuthorization,
    EpmAuth,
    EpmAuthSettings,
    RefreshTokenAuth,
    build_auth,
    client_credentials_warning,
    device_login,
)
from epm.client import EpmClient
from epm.config import EpmBlock
from epm.errors import EpmAuthError
from epm.oauth import device_authorization_url
from epm.tokens import StoredToken, TokenStore, fingerprint
from store.models import Status
from tests.fakes.epm_pod import FakeEpmPod

SCOPE = "urn:opc:serviceInstanceID=12345urn:opc:resource:consumer::all"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pod() -> AsyncIterator[FakeEpmPod]:
    async with FakeEpmPod() as fake:
        fake.add_job("planning", 224, [(0, "Completed", "Rule ran")])
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "secrets")


def oauth_settings(pod: FakeEpmPod, **overrides: str | None) -> EpmAuthSettings:
    values: dict[str, str | None] = {
        "token_url": pod.token_url,
        "client_id": pod.client_id,
        "scope": SCOPE,
    }
    values.update(overrides)
    return EpmAuthSettings(**values)


async def read_job(pod: FakeEpmPod, auth: EpmAuth) -> Status:
    block = EpmBlock(url=pod.url, product="planning", application="Vision")
    async with EpmClient(auth) as client:
        state = await client.get_job_status(block, "planning", 224)
    return state.status


async def test_rotated_token_stored_before_pod_call(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    seed = pod.issue_refresh_token()
    stored_at_call: list[str | None] = []

    def check_store() -> None:
        token = store.load()
        stored_at_call.append(None if token is None else token.refresh_token)

    pod.on_job_request = check_store
    auth = RefreshTokenAuth(oauth_settings(pod, refresh_token=seed), store)
    await read_job(pod, auth)

    assert stored_at_call[0] is not None
    assert stored_at_call[0] != seed
    assert stored_at_call[0] in pod.live_refresh_tokens()


async def test_rotated_token_survives_restart(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())

    first = await read_job(pod, RefreshTokenAuth(settings, store))
    # A new process: the setting still contains the consumed first token.
    second = await read_job(pod, build_auth(settings, store))

    assert first is Status.OK
    assert second is Status.OK
    assert [r.status for r in pod.token_requests("refresh_token")] == [200, 200]


async def test_reused_refresh_token_is_invalid_grant(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    seed = pod.issue_refresh_token()
    settings = oauth_settings(pod, refresh_token=seed)
    await read_job(pod, RefreshTokenAuth(settings, TokenStore(tmp_path / "a")))

    # A second store never saw the rotation, so it sends the consumed token again.
    with pytest.raises(EpmAuthError) as caught:
        await read_job(pod, RefreshTokenAuth(settings, TokenStore(tmp_path / "b")))

    assert caught.value.oauth_error == "invalid_grant"
    assert caught.value.key == "epm_auth"
    assert "epmpulse epm-login" in caught.value.fix
    assert "already been consumed" in caught.value.fix
    assert seed not in str(caught.value)


async def test_expired_refresh_token_asks_for_login(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    seed = pod.issue_refresh_token()
    pod.expire_refresh_tokens()

    with pytest.raises(EpmAuthError) as caught:
        await read_job(
            pod, RefreshTokenAuth(oauth_settings(pod, refresh_token=seed), store)
        )

    assert "expired" in caught.value.fix
    assert "epmpulse epm-login" in caught.value.fix


async def test_missing_refresh_token_asks_for_login(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    with pytest.raises(EpmAuthError) as caught:
        await read_job(pod, RefreshTokenAuth(oauth_settings(pod), store))

    assert "epmpulse epm-login" in caught.value.fix
    assert pod.token_requests() == []


async def test_token_from_later_login_is_used(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    auth = RefreshTokenAuth(
        oauth_settings(pod, refresh_token=pod.issue_refresh_token()), store
    )
    await read_job(pod, auth)
    # The held token dies, and `epmpulse epm-login` stores a new one meanwhile.
    pod.expire_refresh_tokens()
    pod.expire_access_tokens()
    store.save(
        StoredToken(
            pod.issue_refresh_token(), time.time(), pod.token_url, pod.client_id
        )
    )

    status = await read_job(pod, auth)

    assert status is Status.OK


async def test_changed_setting_wins_over_stored_token(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    store.save(
        StoredToken(
            "rt-dead",
            time.time(),
            pod.token_url,
            pod.client_id,
            seed_fingerprint=fingerprint("rt-old-setting"),
        )
    )
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())

    status = await read_job(pod, RefreshTokenAuth(settings, store))

    assert status is Status.OK


async def test_stored_token_of_other_client_is_ignored(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    store.save(StoredToken("rt-other", time.time(), pod.token_url, "another-client"))
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())

    status = await read_job(pod, RefreshTokenAuth(settings, store))

    assert status is Status.OK


async def test_access_token_cached_until_minute_before_expiry(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    clock = FakeClock()
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())
    auth = RefreshTokenAuth(settings, store, clock=clock)

    await read_job(pod, auth)
    clock.now += 3600 - 61
    await read_job(pod, auth)
    requests_before_margin = len(pod.token_requests())
    clock.now += 2
    await read_job(pod, auth)

    assert requests_before_margin == 1
    assert len(pod.token_requests()) == 2


async def test_keep_alive_refreshes_six_day_old_token(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    clock = FakeClock()
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())
    auth = RefreshTokenAuth(settings, store, clock=clock)
    async with EpmClient(auth) as client:
        await client.keep_auth_alive()
        requests_when_fresh = len(pod.token_requests())
        clock.now += 6 * 86400 + 1
        await client.keep_auth_alive()

    stored = store.load()
    assert requests_when_fresh == 0
    assert len(pod.token_requests()) == 1
    assert stored is not None
    assert stored.refreshed_at == clock.now


async def test_concurrent_requests_share_one_refresh(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())
    auth = RefreshTokenAuth(settings, store)
    block = EpmBlock(url=pod.url, product="planning", application="Vision")
    async with EpmClient(auth) as client:
        states = await asyncio.gather(
            *(client.get_job_status(block, "planning", 224) for _ in range(5))
        )

    assert [s.status for s in states] == [Status.OK] * 5
    assert len(pod.token_requests()) == 1


async def test_token_file_is_private(pod: FakeEpmPod, store: TokenStore) -> None:
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())
    await read_job(pod, RefreshTokenAuth(settings, store))

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.secrets_dir.stat().st_mode) == 0o700


async def test_unwritable_store_is_admin_problem(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    blocker = tmp_path / "secrets"
    blocker.write_text("a file where the folder should be")
    settings = oauth_settings(pod, refresh_token=pod.issue_refresh_token())

    with pytest.raises(EpmAuthError) as caught:
        await read_job(pod, RefreshTokenAuth(settings, TokenStore(blocker)))

    assert caught.value.key == "epm_auth_store"
    assert "could not be saved" in caught.value.fix


async def test_no_token_in_logs(
    pod: FakeEpmPod, store: TokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = pod.issue_refresh_token()
    await read_job(
        pod, RefreshTokenAuth(oauth_settings(pod, refresh_token=seed), store)
    )
    stored = store.load()

    assert stored is not None
    assert seed not in caplog.text
    assert stored.refresh_token not in caplog.text
    assert "at-" not in caplog.text


async def test_client_credentials_rejected_for_audience(tmp_path: Path) -> None:
    async with FakeEpmPod(client_secret="fake-secret") as pod:
        pod.add_job("planning", 224, [(0, "Completed")])
        settings = oauth_settings(pod, client_secret="fake-secret")
        auth = build_auth(settings, TokenStore(tmp_path))

        with pytest.raises(EpmAuthError) as caught:
            await read_job(pod, auth)

    assert isinstance(auth, ClientCredentialsAuth)
    assert caught.value.key == f"epm_auth:{pod.url}"
    assert "secondary audience" in caught.value.fix


async def test_client_credentials_accepted_when_allowed(tmp_path: Path) -> None:
    async with FakeEpmPod(
        client_secret="fake-secret", accept_client_credentials=True
    ) as pod:
        pod.add_job("planning", 224, [(0, "Completed")])
        settings = oauth_settings(pod, client_secret="fake-secret")

        status = await read_job(pod, build_auth(settings, TokenStore(tmp_path)))
        token_request = pod.token_requests("client_credentials")[0]

    assert status is Status.OK
    assert token_request.auth_scheme == "Basic"
    assert token_request.basic_user == pod.client_id


async def test_wrong_client_secret_is_invalid_client(tmp_path: Path) -> None:
    async with FakeEpmPod(client_secret="fake-secret") as pod:
        settings = oauth_settings(pod, client_secret="wrong-secret")

        with pytest.raises(EpmAuthError) as caught:
            await read_job(pod, build_auth(settings, TokenStore(tmp_path)))

    assert caught.value.oauth_error == "invalid_client"
    assert "EPM_CLIENT_SECRET" in caught.value.fix
    assert "wrong-secret" not in caught.value.fix


def test_client_credentials_warning_only_for_that_method() -> None:
    client_credentials = EpmAuthSettings(
        token_url="https://idcs.example.com/oauth2/v1/token",
        client_id="id",
        client_secret="secret",
    )
    with_refresh = EpmAuthSettings(
        token_url="https://idcs.example.com/oauth2/v1/token",
        client_id="id",
        client_secret="secret",
        refresh_token="rt",
    )

    warning = client_credentials_warning(client_credentials)

    assert warning is not None
    assert "user context" in warning
    assert "epmpulse epm-login" in warning
    assert client_credentials_warning(with_refresh) is None


async def test_basic_auth_reads_job(pod: FakeEpmPod) -> None:
    status = await read_job(pod, BasicAuth(pod.username, pod.password))

    assert status is Status.OK
    assert pod.job_requests()[0].auth_scheme == "Basic"
    assert pod.job_requests()[0].basic_user == pod.username


async def test_basic_auth_rejected_names_settings(pod: FakeEpmPod) -> None:
    with pytest.raises(EpmAuthError) as caught:
        await read_job(pod, BasicAuth(pod.username, "wrong-password"))

    assert "EPM_PASSWORD" in caught.value.fix
    assert "wrong-password" not in caught.value.fix
    assert len(pod.job_requests()) == 1


def test_build_auth_order(tmp_path: Path) -> None:
    base = {"token_url": "https://idcs.example.com/oauth2/v1/token", "client_id": "id"}
    store = TokenStore(tmp_path)

    refresh = build_auth(
        EpmAuthSettings(**base, refresh_token="rt", client_secret="s", username="u"),
        store,
    )
    client_credentials = build_auth(
        EpmAuthSettings(**base, client_secret="s", username="u", password="p"), store
    )
    basic = build_auth(EpmAuthSettings(username="u", password="p"), store)

    assert refresh.method == "refresh_token"
    assert client_credentials.method == "client_credentials"
    assert basic.method == "basic"


def test_build_auth_stored_token_selects_refresh(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token_url = "https://idcs.example.com/oauth2/v1/token"
    store.save(StoredToken("rt", time.time(), token_url, "id"))
    settings = EpmAuthSettings(token_url=token_url, client_id="id", username="u")

    assert build_auth(settings, store).method == "refresh_token"


def test_build_auth_without_settings_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epmpulse epm-login"):
        build_auth(EpmAuthSettings(), TokenStore(tmp_path))


def test_build_auth_rejects_plain_http_token_url(tmp_path: Path) -> None:
    settings = EpmAuthSettings(
        token_url="http://idcs.example.com/oauth2/v1/token",
        client_id="id",
        refresh_token="rt",
    )

    with pytest.raises(ValueError, match="EPM_TOKEN_URL"):
        build_auth(settings, TokenStore(tmp_path))


def test_build_auth_names_token_endpoint_form(tmp_path: Path) -> None:
    settings = EpmAuthSettings(
        token_url="idcs.example.com/oauth2/v1/token",
        client_id="id",
        refresh_token="rt",
    )

    with pytest.raises(ValueError) as caught:
        build_auth(settings, TokenStore(tmp_path))

    assert "EPM_TOKEN_URL" in str(caught.value)
    assert "/oauth2/v1/token" in str(caught.value).split("use", 1)[1]
    assert "pod base URL" not in str(caught.value)


def test_settings_from_env_ignore_empty() -> None:
    settings = EpmAuthSettings.from_env(
        {"EPM_USERNAME": "admin", "EPM_PASSWORD": "", "EPM_SCOPE": "  "}
    )

    assert settings.username == "admin"
    assert settings.password is None
    assert settings.scope is None


def test_settings_repr_hides_secrets() -> None:
    settings = EpmAuthSettings(
        client_secret="s-value", refresh_token="rt-value", password="p-value"
    )

    assert "s-value" not in repr(settings)
    assert "rt-value" not in repr(settings)
    assert "p-value" not in repr(settings)


class DeviceSleeper:
    """Records device-login waits and approves the login on a chosen wait."""

    def __init__(self, pod: FakeEpmPod, approve_on: int, approved: bool = True) -> None:
        self.pod = pod
        self.approve_on = approve_on
        self.approved = approved
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == self.approve_on:
            self.pod.approve_device(self.approved)


async def test_device_login_stores_refresh_token(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    shown: list[DeviceAuthorization] = []
    sleeper = DeviceSleeper(pod, approve_on=2)

    token = await device_login(oauth_settings(pod), store, shown.append, sleep=sleeper)
    stored = store.load()
    status = await read_job(pod, build_auth(oauth_settings(pod), store))

    assert shown[0].verification_uri == f"{pod.url}/ui/v1/device"
    assert len(shown[0].user_code) == 8
    assert sleeper.delays == [1.0, 1.0]
    assert stored == token
    assert status is Status.OK


async def test_device_login_honours_slow_down(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    pod.slow_down_polls = 1
    sleeper = DeviceSleeper(pod, approve_on=2)

    await device_login(oauth_settings(pod), store, lambda _: None, sleep=sleeper)

    assert sleeper.delays == [1.0, 6.0]


async def test_device_login_denied_raises(pod: FakeEpmPod, store: TokenStore) -> None:
    sleeper = DeviceSleeper(pod, approve_on=1, approved=False)

    with pytest.raises(EpmAuthError, match="denied"):
        await device_login(oauth_settings(pod), store, lambda _: None, sleep=sleeper)

    assert store.load() is None


async def test_device_login_adds_offline_access(
    pod: FakeEpmPod, store: TokenStore
) -> None:
    # The fake issues a refresh token only for scopes with offline_access.
    sleeper = DeviceSleeper(pod, approve_on=1)

    token = await device_login(
        oauth_settings(pod), store, lambda _: None, sleep=sleeper
    )

    assert token.refresh_token in pod.live_refresh_tokens()


def test_device_url_derived_from_token_url() -> None:
    url = device_authorization_url(
        "https://idcs-1.identity.oraclecloud.com/oauth2/v1/token"
    )

    assert url == "https://idcs-1.identity.oraclecloud.com/oauth2/v1/device"


def test_device_url_needs_token_suffix() -> None:
    with pytest.raises(ValueError, match="EPM_TOKEN_URL"):
        device_authorization_url("https://idcs-1.identity.oraclecloud.com/oauth2")
