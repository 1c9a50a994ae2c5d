"""Template tags of the moderation console (the admin's templates)."""

from django import template

from ..models import Report

register = template.Library()


@register.simple_tag(takes_context=True)
def open_report_count(context) -> int | None:
    """Open reports, for staff who may see them (None for others)."""
    request = context.get("request")
    if request is None or not request.user.has_perm("chat.view_report"):
        return None
    return Report.objects.filter(status=Report.Status.OPEN).count()
