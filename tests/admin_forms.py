"""Posting the Django admin's change forms back as a browser would."""

from __future__ import annotations

SKIPPED = ("password", "groups", "user_permissions", "last_login")


def change_form_data(client, path: str) -> dict:
    """The change form at `path` (and its inline formsets) as a browser would
    post it back unchanged: date-times split, checkboxes on only when set."""
    page = client.get(path)
    assert page.status_code == 200, path
    form = page.context["adminform"].form
    data = {}
    for name, value in form.initial.items():
        if value is None or name in SKIPPED:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif hasattr(value, "strftime"):  # a SplitDateTimeWidget
            data[f"{name}_0"] = value.strftime("%Y-%m-%d")
            data[f"{name}_1"] = value.strftime("%H:%M:%S")
        else:
            data[name] = value
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{k}": v for k, v in management.initial.items()})
        for row in inline.formset.forms:
            data[f"{row.prefix}-id"] = row.instance.pk
            data[f"{row.prefix}-{inline.formset.fk.name}"] = inline.formset.instance.pk
    return data
