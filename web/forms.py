from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.lockout import refusal_message


class SignupForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        max_length=128, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    organization = forms.CharField(
        max_length=100,
        label="Organization name",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def get_invalid_login_error(self):
        # say so when the account is locked or the address throttled (accounts.lockout)
        refusal = getattr(self.request, "kastle_login_refused", None)
        if refusal is not None:
            return forms.ValidationError(refusal_message(refusal), code="login_refused")
        return super().get_invalid_login_error()
