"""POST /auth/login, POST /auth/logout, GET /auth/me."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from pingtower.common.http.problems import Problem, problem_response
from pingtower.common.security import Principal, require
from pingtower.identity.api.schemas import LoginRequest, LoginResponse, Me
from pingtower.identity.authenticator import SESSION_COOKIE, presented_session
from pingtower.identity.login import LoggedIn, Logins, Throttled


def build_auth_router(logins: Logins) -> APIRouter:
    router = APIRouter(prefix="/auth", tags=["auth"])

    @router.post(
        "/login",
        response_model=LoginResponse,
        responses={401: {"description": "Wrong username or password"}, 429: {}},
    )
    async def login(body: LoginRequest, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        result = await logins.login(body.username, body.password, address)
        if isinstance(result, Throttled):
            return problem_response(
                429,
                "Too Many Requests",
                f"too many failed logins; try again in {result.retry_after} s",
                instance=request.url.path,
                headers={"Retry-After": str(result.retry_after)},
            )
        if not isinstance(result, LoggedIn):
            raise Problem(401, "Unauthorized", "wrong username or password")
        response = JSONResponse(
            LoginResponse(access_token=result.token, expires_in=result.expires_in).model_dump()
        )
        # The browser's copy: out of reach of scripts, never sent by another site.
        response.set_cookie(
            SESSION_COOKIE,
            result.token,
            max_age=result.expires_in,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    @router.post("/logout", status_code=204)
    async def logout(request: Request) -> Response:
        """Ends the session the request carries (cookie or bearer); without one, does nothing."""
        token = presented_session(request)
        if token is not None:
            await logins.logout(token)
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.get("/me", response_model=Me)
    async def me(principal: Principal = Depends(require("viewer"))) -> Me:
        return Me(
            subject=principal.subject,
            workspace=principal.tenant,
            roles=sorted(principal.roles),
        )

    return router
