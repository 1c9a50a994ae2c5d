from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import csrf
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import health, search, selectors, services, sse, throttle, wire
from .events import Close
from .forms import AddMemberForm, DirectForm, HandOverForm, RoomForm, SignupForm, TopicForm
from .models import Invite, Message


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: Django's page, but for a frame POSTed beside an
    event stream, whose answer the page reads as JSON frames."""
    match = request.resolver_match
    if match is not None and match.view_name == "chat:sse_frame":
        return sse.csrf_refused()
    return csrf.csrf_failure(request, reason)


def signup(request):
    if request.user.is_authenticated:
        return redirect("chat:directory")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:directory")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/signup.html", {"form": form}, status=status)


@login_required
def directory(request):
    rooms = selectors.room_directory(user=request.user, page=request.GET.get("page"))
    return render(
        request,
        "chat/directory.html",
        {
            "rooms": rooms,
            "form": RoomForm(),
            "directs": selectors.direct_conversations(user=request.user),
            "direct_form": DirectForm(auto_id="direct_%s"),
        },
    )


SEARCH_SCOPE = "search"


@never_cache
@login_required
def search_messages(request):
    """Messages matching ?q= in the rooms the user may read, newest first;
    ?before=<message id> is the next page (each page links to it)."""
    raw = request.GET.get("q", "")
    room = _room_or_404(request, request.GET["room"]) if request.GET.get("room") else None
    context = {"q": raw[: search.MAX_QUERY_LENGTH * 2], "results": None, "error": "", "room": room}
    if "q" not in request.GET:  # the empty form
        return render(request, "chat/search.html", context)
    before = request.GET.get("before", "")
    if before and not (before.isascii() and before.isdigit() and len(before) <= 18):
        context["error"] = "That page of results does not exist: start the search again."
        return render(request, "chat/search.html", context, status=400)
    rate = settings.CHAT_SEARCH_RATE
    wait = throttle.retry_after(SEARCH_SCOPE, str(request.user.pk), rate)
    if wait is not None:
        context["error"] = f"Too many searches: try again {throttle.wait_text(wait)}."
        response = render(request, "chat/search.html", context, status=429)
        response["Retry-After"] = str(int(wait) + 1)
        return response
    throttle.record(SEARCH_SCOPE, str(request.user.pk), rate)
    try:
        context["results"] = selectors.search_messages(
            user=request.user, query=raw, before=int(before) if before else None, room=room
        )
    except search.InvalidQuery as error:
        context["error"] = str(error)
        return render(request, "chat/search.html", context, status=400)
    context["first_page"] = not before
    return render(request, "chat/search.html", context)


@login_required
def create_room(request):
    form = RoomForm(request.POST or None)
    status = 400 if request.method == "POST" else 200
    if request.method == "POST" and form.is_valid():
        try:
            room = services.create_room(
                owner=request.user,
                name=form.cleaned_data["name"],
                is_private=form.cleaned_data["private"],
            )
        except services.ServiceError as error:
            form.add_error("name", error.detail)
            status = error.http_status  # 429 for the rooms-per-hour cap
        else:
            return redirect("chat:room", slug=room.slug)
    return render(request, "chat/create_room.html", {"form": form}, status=status)


def _room_or_404(request, slug):
    try:
        return selectors.get_room_for(user=request.user, slug=slug)
    except selectors.RoomNotFound:
        raise Http404("No such room.") from None


MEMBERS_SHOWN = 200


@login_required
def room(request, slug):
    room = _room_or_404(request, slug)
    membership = services.join_room(room=room, user=request.user)
    can_add_members = selectors.can_add_members(user=request.user, room=room)
    can_moderate = selectors.can_moderate(user=request.user, room=room)
    members, member_total = selectors.member_list(room=room, limit=MEMBERS_SHOWN)
    title = (
        selectors.direct_partner_name(room=room, user=request.user) if room.is_direct else room.name
    )
    return render(
        request,
        "chat/room.html",
        {
            "room": room,
            "title": title,
            "membership": membership,
            "can_add_members": can_add_members,
            "members": members,
            "member_total": member_total,
            "member_form": AddMemberForm(),
            "max_length": settings.CHAT_MAX_MESSAGE_LENGTH,
            "can_moderate": can_moderate,
            "can_manage": selectors.can_manage_room(user=request.user, room=room),
            "last_read_seq": membership.last_read_seq,
            "muted_until": _muted_until(membership),
            "mute_choices": services.mute_choices(),
            "page_config": room_page_config(),
            "edit_window": settings.CHAT_EDIT_WINDOW,
            "reactions": settings.CHAT_REACTIONS,
        },
    )


def room_page_config() -> dict:
    """The numbers the room page's scripts work by, from the settings and the
    contract's close codes: one source each. The page reads them from a JSON
    data block (json_script), which the Content-Security-Policy allows."""
    return {
        "historyPage": settings.CHAT_HISTORY_PAGE,
        "typingIntervalMs": round(settings.CHAT_TYPING_INTERVAL * 1000),
        "close": {
            "sessionEnded": Close.SESSION_ENDED,
            "noAccess": Close.NO_ACCESS,
            "left": Close.LEFT,
            "reconnect": Close.RECONNECT,
            "tooFarBehind": Close.TOO_FAR_BEHIND,
            "serviceRestart": Close.SERVICE_RESTART,
            "tryAgainLater": Close.TRY_AGAIN_LATER,
        },
    }


def _muted_until(membership) -> str:
    """For the page's banner: the end of the user's mute (ISO), "indefinitely",
    or "" when not muted."""
    until = membership.muted_until
    if until is None or until <= timezone.now():
        return ""
    return "indefinitely" if until >= services.MUTED_INDEFINITELY else wire.iso_utc(until)


MENTION_LIMIT = 10


@login_required
def people(request, slug):
    """Members whose name starts with ?q=, for @mention completion."""
    room = _room_or_404(request, slug)
    prefix = request.GET.get("q", "")[:150]
    names = selectors.member_names(room=room, prefix=prefix, limit=MENTION_LIMIT)
    return JsonResponse({"users": names})


@login_required
@require_POST
def add_member(request, slug):
    room = _room_or_404(request, slug)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        username = form.cleaned_data["username"]
        try:
            services.add_member(room=room, actor=request.user, username=username)
        except services.ServiceError as error:
            messages.error(request, error.detail)
        else:
            # The same words whether or not the account exists: this form
            # does not tell anyone who has an account.
            messages.success(
                request, f"If there is an account called {username}, it is now in {room.name}."
            )
    else:
        messages.error(request, "Give a username to add.")
    return redirect("chat:room", slug=room.slug)


@never_cache
@login_required
def direct(request, username=None):
    """GET /dm/<username>/: the conversation with them if there is one, else
    a page to start it. POST (from that page, or the directory's form with
    `username`): start it, or open the one there is."""
    if request.method == "POST":
        form = DirectForm({"username": username} if username else request.POST)
        if form.is_valid():
            try:
                room = services.start_direct(
                    user=request.user, username=form.cleaned_data["username"]
                )
            except services.ServiceError as error:
                form.add_error("username", error.detail)
                return render(request, "chat/direct.html", {"form": form}, status=error.http_status)
            return redirect("chat:room", slug=room.slug)
        return render(request, "chat/direct.html", {"form": form}, status=400)
    if username is None:
        return render(request, "chat/direct.html", {"form": DirectForm()})
    try:
        other = services.direct_partner(user=request.user, username=username)
    except services.ServiceError as error:
        form = DirectForm({"username": username})
        form.is_valid()
        form.add_error("username", error.detail)
        return render(request, "chat/direct.html", {"form": form}, status=error.http_status)
    existing = selectors.direct_between(user=request.user, other=other)
    if existing is not None:
        return redirect("chat:room", slug=existing.slug)
    return render(request, "chat/direct.html", {"other": other, "form": DirectForm()})


@login_required
@require_POST
def leave_room(request, slug):
    room = _room_or_404(request, slug)
    try:
        services.leave_room(room=room, user=request.user)
    except services.ServiceError as error:
        messages.error(request, error.detail)
        return redirect("chat:room", slug=room.slug)
    messages.success(request, f"You left {room.name}.")
    return redirect("chat:directory")


def _managed_room_or_403(request, slug):
    room = _room_or_404(request, slug)
    if not selectors.can_manage_room(user=request.user, room=room):
        raise PermissionDenied("Only the room's owner can change its settings.")
    return room


def _settings_page(request, room, *, topic_form=None, handover_form=None, status=200):
    invites = list(selectors.room_invites(room=room))
    for invite in invites:
        invite.url = request.build_absolute_uri(reverse("chat:invite", args=[invite.token]))
    return render(
        request,
        "chat/room_settings.html",
        {
            "room": room,
            "topic_form": topic_form or TopicForm(initial={"topic": room.topic}),
            "handover_form": handover_form
            or HandOverForm(choices=selectors.handover_choices(room=room, viewer=request.user)),
            "invites": invites,
            "invite_hours": [(h, _hours_label(h)) for h in services.INVITE_HOURS],
            "default_invite_hours": services.DEFAULT_INVITE_HOURS,
        },
        status=status,
    )


def _hours_label(hours: int) -> str:
    return services.duration_label(hours * 60)


@never_cache
@login_required
def room_settings(request, slug):
    """The owner's page for the room: its topic."""
    return _settings_page(request, _managed_room_or_403(request, slug))


@login_required
@require_POST
def set_topic(request, slug):
    room = _managed_room_or_403(request, slug)
    form = TopicForm(request.POST)
    if form.is_valid():
        try:
            services.set_topic(room=room, actor=request.user, topic=form.cleaned_data["topic"])
        except services.ServiceError as error:
            form.add_error("topic", error.detail)
            return _settings_page(request, room, topic_form=form, status=error.http_status)
        messages.success(request, "Topic saved." if room.topic else "Topic cleared.")
        return redirect("chat:room", slug=room.slug)
    return _settings_page(request, room, topic_form=form, status=400)


@login_required
@require_POST
def hand_over_room(request, slug):
    """The settings page's "Hand over the room": the chosen member owns the
    room from now on. The former owner may no longer have the settings
    page, so this goes back to the room page, which now offers to leave."""
    room = _managed_room_or_403(request, slug)
    was_owner = room.owner_id == request.user.pk
    form = HandOverForm(
        request.POST, choices=selectors.handover_choices(room=room, viewer=request.user)
    )
    if not form.is_valid():
        return _settings_page(request, room, handover_form=form, status=400)
    username = form.cleaned_data["to"]
    try:
        membership = selectors.member_named(room=room, username=username)
        if membership is None:
            raise services.NotFound(f"There is no member called {username} in {room.name}.")
        services.hand_over_room(room=room, by=request.user, to=membership.user)
    except services.ServiceError as error:
        form.add_error("to", error.detail)
        return _settings_page(request, room, handover_form=form, status=error.http_status)
    stays = " You stay on as one of its moderators." if was_owner else ""
    messages.success(request, f"{username} owns {room.name} now.{stays}")
    return redirect("chat:room", slug=room.slug)


@login_required
@require_POST
def create_invite(request, slug):
    room = _managed_room_or_403(request, slug)
    _tell_outcome(
        request,
        lambda: services.create_invite(
            room=room, actor=request.user, hours=request.POST.get("hours", "")
        ),
        success="New invite link made: copy it from the list below.",
    )
    return redirect("chat:room_settings", slug=room.slug)


def _tell_outcome(request, action, *, success: str) -> None:
    """Run a service for a settings form; the next page says how it went."""
    try:
        action()
    except services.ServiceError as error:
        messages.error(request, error.detail)
    else:
        messages.success(request, success)


@login_required
@require_POST
def revoke_invite(request, slug, invite_id):
    room = _managed_room_or_403(request, slug)
    invite = Invite.objects.select_related("room").filter(room=room, pk=invite_id).first()
    if invite is None:
        raise Http404("No such invite.")
    _tell_outcome(
        request,
        lambda: services.revoke_invite(invite=invite, actor=request.user),
        success="Invite link revoked: it no longer works.",
    )
    return redirect("chat:room_settings", slug=room.slug)


@never_cache
@login_required
def invite(request, token):
    """An invite link: a page that says which room, with a button to join
    (POST); a link that does not work says why."""
    try:
        found = services.usable_invite(token=token[:64])
        if request.method == "POST":
            room = services.accept_invite(token=token[:64], user=request.user)
            messages.success(request, f"You joined {room.name}.")
            return redirect("chat:room", slug=room.slug)
    except services.ServiceError as error:
        status = 404 if isinstance(error, services.NotFound) else 410
        if isinstance(error, services.Forbidden):
            status = 403
        return render(request, "chat/invite_invalid.html", {"detail": error.detail}, status=status)
    if selectors.membership_of(room=found.room, user=request.user) is not None:
        return redirect("chat:room", slug=found.room.slug)
    return render(request, "chat/invite.html", {"invite": found, "room": found.room})


async def _probe(checks) -> JsonResponse:
    outcomes = await health.run_checks(checks)
    failed = {name: outcome for name, outcome in outcomes.items() if outcome != "ok"}
    if failed:
        return JsonResponse({"status": "error", **failed}, status=503)
    return JsonResponse({"status": "ok"})


@never_cache
async def healthz(request):
    """The contract's health: the database and the channel layer answer."""
    return await _probe(health.health_checks())


@never_cache
async def readyz(request):
    """Readiness: the database takes writes and answers reads, Redis answers."""
    return await _probe(health.readiness_checks())


@never_cache
async def livez(request):
    """Liveness: the process answers (no I/O)."""
    return JsonResponse({"status": "ok"})


# ---------------------------------------------------------------- moderation
# The room page calls these with fetch(); answers are JSON so the page can
# show the outcome. Same services as the admin, so the same checks and log.


def _json_refusal(error: services.ServiceError) -> JsonResponse:
    """A refusal as the page's fetch() gets it, with its class's HTTP status."""
    return JsonResponse({"ok": False, "detail": error.detail}, status=error.http_status)


def _json_outcome(action) -> JsonResponse:
    """Run a service call; a refusal answers with its own HTTP status."""
    try:
        action()
    except services.ServiceError as error:
        return _json_refusal(error)
    return JsonResponse({"ok": True})


def _cannot_moderate(room) -> JsonResponse:
    return _json_refusal(services.Forbidden(f"You cannot moderate {room.name}."))


def _room_message_or_404(request, slug, message_id):
    room = _room_or_404(request, slug)
    message = (
        Message.objects.select_related("room", "author").filter(room=room, pk=message_id).first()
    )
    if message is None:
        raise Http404("No such message.")
    return message


@login_required
@require_POST
def remove_message(request, slug, message_id):
    message = _room_message_or_404(request, slug, message_id)
    return _json_outcome(
        lambda: services.remove_message(
            message=message, actor=request.user, reason=request.POST.get("reason", "")
        )
    )


@login_required
@require_POST
def report_message(request, slug, message_id):
    message = _room_message_or_404(request, slug, message_id)
    return _json_outcome(
        lambda: services.report_message(
            message=message, reporter=request.user, reason=request.POST.get("reason", "")
        )
    )


USER_ACTIONS = {
    "ban": services.ban_user,
    "unban": services.unban_user,
    "mute": services.mute_user,
    "unmute": services.unmute_user,
    "role": services.set_role,
}


def _user_action_options(request, action: str) -> dict:
    """The fields an action takes, checked (InvalidInput for a bad one)."""
    options = {"reason": request.POST.get("reason", "")}
    if action == "mute":
        options["until"] = services.mute_until(request.POST.get("minutes", ""))
    elif action == "role":
        options["role"] = request.POST.get("role", "")  # set_role checks it
    return options


@login_required
@require_POST
def moderate_user(request, slug, username, action):
    room = _room_or_404(request, slug)
    service = USER_ACTIONS.get(action)
    if service is None:
        raise Http404("No such action.")
    # Who may act comes before whom they name, and someone who is not a member
    # gets the same answer as a name nobody has: these replies tell nobody
    # which usernames exist.
    if not selectors.can_moderate(user=request.user, room=room):
        return _cannot_moderate(room)
    try:
        options = _user_action_options(request, action)
    except services.ServiceError as error:
        return _json_refusal(error)
    membership = selectors.member_named(room=room, username=username)
    if membership is None:
        return _json_refusal(
            services.NotFound(f"There is no member called {username} in {room.name}.")
        )
    return _json_outcome(
        lambda: service(room=room, user=membership.user, actor=request.user, **options)
    )


MEMBER_LIST_LIMIT = 50


@never_cache
@login_required
def member_states(request, slug):
    """The room's members with their states (muted until, banned, role) and
    what the asker may do to each: for the room page's members dialog, which
    only moderators have. ?q= finds names starting with it."""
    room = _room_or_404(request, slug)
    if not selectors.can_moderate(user=request.user, room=room):
        return _cannot_moderate(room)
    states, more = selectors.member_states(
        room=room,
        viewer=request.user,
        prefix=request.GET.get("q", "").strip()[:150],
        limit=MEMBER_LIST_LIMIT,
    )
    return JsonResponse({"members": [state.as_json() for state in states], "more": more})
