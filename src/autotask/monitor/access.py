"""Who may open the monitor and who may act from it.

Staff by default, as the admin; a team opens it wider with Django's own permissions on the run
model (``autotask.view_taskrun`` to look, ``autotask.change_taskrun`` to retry, cancel and run
schedules now), given to a group, so there is no setting to keep in step with the admin.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

VIEW_PERMISSION = "autotask.view_taskrun"
ACT_PERMISSION = "autotask.change_taskrun"

View = TypeVar("View", bound=Callable[..., Any])


def can_view(user: Any) -> bool:
    return bool(user.is_active and (user.is_staff or user.has_perm(VIEW_PERMISSION)))


def can_act(user: Any) -> bool:
    return bool(user.is_active and (user.is_superuser or user.has_perm(ACT_PERMISSION)))


def _denied(request: HttpRequest) -> HttpResponseBase:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    raise PermissionDenied("the monitor needs staff status or autotask.view_taskrun")


def viewer_required(view: View) -> View:
    """For sync and async views alike: the user is read from the session before the view."""
    if iscoroutinefunction(view):

        @wraps(view)
        async def async_checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            user = await request.auser()
            if not can_view(user):
                return _denied(request)
            return await view(request, *args, **kwargs)

        return async_checked  # type: ignore[return-value]

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not can_view(request.user):
            return _denied(request)
        return view(request, *args, **kwargs)

    return checked  # type: ignore[return-value]
