from django import forms


class RoomForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    private = forms.BooleanField(
        required=False, help_text="Only members can see and join it; you add them by username."
    )


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)
