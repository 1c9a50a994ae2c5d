from django import forms
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm, UserCreationForm
from django.core.exceptions import ValidationError

from . import services
from .models import TOPIC_MAX_LENGTH


class RoomForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    private = forms.BooleanField(
        required=False, help_text="Only members can see and join it; you add them by username."
    )


class TopicForm(forms.Form):
    topic = forms.CharField(
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"maxlength": TOPIC_MAX_LENGTH}),
        help_text=f"One line under the room's name, up to {TOPIC_MAX_LENGTH} characters; "
        "empty to clear it.",
    )


class HandOverForm(forms.Form):
    """The settings page's "Hand over the room": a member to make the owner.
    The choices only draw the select; services.hand_over_room checks the
    name posted, whatever it is."""

    to = forms.CharField(
        label="New owner",
        max_length=150,
        help_text="They get the room's settings and the owner's powers; you stay on as one "
        "of its moderators, and can then leave it.",
    )
    confirm = forms.BooleanField(label="I understand that I cannot take this back myself")

    def __init__(self, *args, choices: list[str], **kwargs) -> None:
        kwargs.setdefault("auto_id", "handover_%s")  # apart from the topic form's ids
        super().__init__(*args, **kwargs)
        self.fields["to"].widget = forms.Select(
            choices=[("", "Choose a member")] + [(name, name) for name in choices]
        )


class DirectForm(forms.Form):
    username = forms.CharField(label="Username", max_length=150, strip=True)


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)


class UsernameRules:
    """For the forms that name an account (sign-up, the admin's user forms):
    no URL path tricks, no hidden characters, no look-alike of another name."""

    def clean_username(self):
        parent = getattr(super(), "clean_username", None)
        username = parent() if parent else self.cleaned_data.get("username")
        if username and not self.has_error("username"):
            try:
                services.check_username(username=username, user_pk=self.instance.pk)
            except services.ServiceError as error:
                raise ValidationError(error.detail) from None
        return username


class SignupForm(UsernameRules, UserCreationForm):
    pass


class AdminAddUserForm(UsernameRules, AdminUserCreationForm):
    pass


class AdminChangeUserForm(UsernameRules, UserChangeForm):
    pass
