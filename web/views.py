"""Portal pages: sign-up, log in, log out (the rest of the portal is in web/pages/)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.audit import client_ip
from accounts.throttling import SignupRateThrottle
from controlplane.api.tenancy import SESSION_ORGANIZATION_KEY
from controlplane.errors import ValidationFailed

from .forms import LoginForm, SignupForm


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.KASTLE_SIGNUP_OPEN:
        return render(request, "web/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        throttle = SignupRateThrottle()
        if not throttle.allow_request(request, None):
            form.add_error(None, "Too many sign-ups from your address. Please try again later.")
            status = 429
        elif form.is_valid():
            try:
                result = services.organization_signup(
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password"],
                    organization_name=form.cleaned_data["organization"],
                    source_ip=client_ip(request),
                    issue_token=False,
                )
            except ValidationFailed as exc:
                for field, errors in exc.details.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
                status = 400
            else:
                login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
                request.session[SESSION_ORGANIZATION_KEY] = result.organization.pk
                messages.success(request, f"Welcome to Kastle, {result.organization.name}!")
                return redirect("web:home")
        else:
            status = 400
    return render(request, "web/signup.html", {"form": form}, status=status)


class LoginView(auth_views.LoginView):
    template_name = "web/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        logout(request)
        messages.info(request, "You are logged out.")
        return redirect("web:login")
    return render(request, "web/logout.html")
