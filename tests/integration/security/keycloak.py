"""Getting real tokens from the test Keycloak (scripts/keycloak.sh, realm deploy/keycloak/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

REALM = "pingtower"
AUTOMATION_SECRET = "demo-only-automation-secret-change-me"  # demo realm, see its README
DEMO_PASSWORDS = {
    "alice-admin": "demo-alice",
    "bob-editor": "demo-bob",
    "carol-viewer": "demo-carol",
    "dave-admin": "demo-dave",
    "erin-noworkspace": "demo-erin",
}


@dataclass(frozen=True)
class Keycloak:
    base: str
    admin_user: str
    admin_password: str

    @classmethod
    def from_url(cls, url: str) -> Keycloak:
        parts = urlsplit(url)
        return cls(
            f"{parts.scheme}://{parts.hostname}:{parts.port}",
            unquote(parts.username or ""),
            unquote(parts.password or ""),
        )

    def issuer(self, realm: str = REALM) -> str:
        return f"{self.base}/realms/{realm}"

    async def token(self, form: dict[str, str], realm: str = REALM) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=20) as client:
            response = await client.post(
                f"{self.issuer(realm)}/protocol/openid-connect/token", data=form
            )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def user_token(self, username: str, client_id: str = "pingtower-cli") -> str:
        answer = await self.token(
            {
                "grant_type": "password",
                "client_id": client_id,
                "username": username,
                "password": DEMO_PASSWORDS[username],
                "scope": "openid",
            }
        )
        return str(answer["access_token"])

    async def automation_token(self) -> str:
        answer = await self.token(
            {
                "grant_type": "client_credentials",
                "client_id": "pingtower-automation",
                "client_secret": AUTOMATION_SECRET,
            }
        )
        return str(answer["access_token"])

    async def master_admin_token(self) -> str:
        answer = await self.token(
            {
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": self.admin_user,
                "password": self.admin_password,
            },
            realm="master",
        )
        return str(answer["access_token"])


class RealmAdmin:
    """The few admin REST calls the tests need, as the master realm's bootstrap admin."""

    def __init__(self, keycloak: Keycloak, token: str) -> None:
        self.keycloak = keycloak
        self.headers = {"authorization": f"Bearer {token}"}

    def url(self, path: str) -> str:
        return f"{self.keycloak.base}/admin/realms/{REALM}{path}"

    async def add_signing_key(self, name: str, priority: int) -> str:
        """A new generated RS256 key that outranks the realm's own: tokens are signed with it."""
        async with httpx.AsyncClient(timeout=30, headers=self.headers) as client:
            realm = await client.get(self.url(""))
            assert realm.status_code == 200, realm.text
            response = await client.post(
                self.url("/components"),
                json={
                    "name": name,
                    "providerId": "rsa-generated",
                    "providerType": "org.keycloak.keys.KeyProvider",
                    "parentId": realm.json()["id"],
                    "config": {
                        "priority": [str(priority)],
                        "enabled": ["true"],
                        "active": ["true"],
                        "algorithm": ["RS256"],
                        "keySize": ["2048"],
                    },
                },
            )
        assert response.status_code == 201, response.text
        return response.headers["location"].rsplit("/", 1)[-1]

    async def remove_component(self, component_id: str) -> None:
        async with httpx.AsyncClient(timeout=30, headers=self.headers) as client:
            response = await client.delete(self.url(f"/components/{component_id}"))
        assert response.status_code == 204, response.text
