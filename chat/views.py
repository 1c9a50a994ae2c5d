import redis
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.db import connection
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import selectors, services
from .forms import AddMemberForm, RoomForm
from .models import Membership


def signup(request):
    if request.user.is_authenticated:
        return redirect("chat:directory")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:directory")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/signup.html", {"form": form}, status=status)


@login_required
def directory(request):
    return render(
        request,
        "chat/directory.html",
        {"rooms": selectors.room_directory(user=request.user), "form": RoomForm()},
    )


@login_required
def create_room(request):
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.create_room(
                owner=request.user,
                name=form.cleaned_data["name"],
                is_private=form.cleaned_data["private"],
            )
        except services.ServiceError as error:
            form.add_error("name", error.detail)
        else:
            return redirect("chat:room", slug=room.slug)
    status = 400 if request.method == "POST" else 200
    return render(request, "chat/create_room.html", {"form": form}, status=status)


def _room_or_404(request, slug):
    try:
        return selectors.get_room_for(user=request.user, slug=slug)
    except selectors.RoomNotFound:
        raise Http404("No such room.") from None


@login_required
def room(request, slug):
    room = _room_or_404(request, slug)
    membership = services.join_room(room=room, user=request.user)
    can_add_members = request.user.is_staff or membership.role == Membership.Role.OWNER
    return render(
        request,
        "chat/room.html",
        {
            "room": room,
            "membership": membership,
            "can_add_members": can_add_members,
            "members": selectors.room_members(room=room) if room.is_private else [],
            "member_form": AddMemberForm(),
            "max_length": settings.CHAT_MAX_MESSAGE_LENGTH,
        },
    )


@login_required
@require_POST
def add_member(request, slug):
    room = _room_or_404(request, slug)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            services.add_member(
                room=room, actor=request.user, username=form.cleaned_data["username"]
            )
        except services.ServiceError as error:
            messages.error(request, error.detail)
        else:
            messages.success(request, f"Added {form.cleaned_data['username']} to {room.name}.")
    else:
        messages.error(request, "Give a username to add.")
    return redirect("chat:room", slug=room.slug)


_redis_for_health = None


def _redis_ping() -> None:
    global _redis_for_health
    if _redis_for_health is None:
        _redis_for_health = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    _redis_for_health.ping()


@never_cache
def healthz(request):
    problems = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure means "not healthy"
        problems["database"] = str(error) or type(error).__name__
    if settings.REDIS_URL:
        try:
            _redis_ping()
        except Exception as error:
            problems["channel_layer"] = str(error) or type(error).__name__
    if problems:
        return JsonResponse({"status": "error", **problems}, status=503)
    return JsonResponse({"status": "ok"})
