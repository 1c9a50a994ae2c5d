from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.directory, name="directory"),
    path("rooms/new/", views.create_room, name="create_room"),
    path("rooms/<str:slug>/", views.room, name="room"),
    path("rooms/<str:slug>/members/", views.add_member, name="add_member"),
]
