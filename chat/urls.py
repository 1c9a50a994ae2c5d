from django.urls import path

from . import sse, views

app_name = "chat"
urlpatterns = [
    path("", views.directory, name="directory"),
    path("rooms/new/", views.create_room, name="create_room"),
    path("search/", views.search_messages, name="search"),
    path("rooms/<str:slug>/", views.room, name="room"),
    path("rooms/<str:slug>/members/", views.add_member, name="add_member"),
    path("rooms/<str:slug>/people/", views.people, name="people"),
    path("rooms/<str:slug>/settings/", views.room_settings, name="room_settings"),
    path("rooms/<str:slug>/topic/", views.set_topic, name="set_topic"),
    path("rooms/<str:slug>/leave/", views.leave_room, name="leave_room"),
    path("rooms/<str:slug>/hand-over/", views.hand_over_room, name="hand_over_room"),
    path("rooms/<str:slug>/invites/", views.create_invite, name="create_invite"),
    path(
        "rooms/<str:slug>/invites/<int:invite_id>/revoke/",
        views.revoke_invite,
        name="revoke_invite",
    ),
    path("invite/<str:token>/", views.invite, name="invite"),
    path("dm/", views.direct, name="direct_start"),
    path("dm/<str:username>/", views.direct, name="direct"),
    # The frames of a client whose WebSocket is blocked (its events: chat.sse).
    path("sse/rooms/<str:slug>/", sse.post_frame, name="sse_frame"),
]

# Moderation from the room page (owners, room moderators, staff) and reports.
urlpatterns += [
    path(
        "rooms/<str:slug>/messages/<int:message_id>/remove/",
        views.remove_message,
        name="remove_message",
    ),
    path(
        "rooms/<str:slug>/messages/<int:message_id>/report/",
        views.report_message,
        name="report_message",
    ),
    path(
        "rooms/<str:slug>/moderation/members/",
        views.member_states,
        name="member_states",
    ),
    path(
        "rooms/<str:slug>/users/<str:username>/<str:action>/",
        views.moderate_user,
        name="moderate_user",
    ),
]
