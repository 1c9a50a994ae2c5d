from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from chat import views
from chat.auth_throttle import guard_login, guard_password_change, guard_signup

# Accounts: Django's auth views without password reset by email. Accounts
# have no verified address here (sign-up asks for none), so a reset link
# could reach nobody; staff set a new password in the admin instead.
accounts = [
    path("login/", guard_login(auth_views.LoginView.as_view()), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", guard_signup(views.signup), name="signup"),
    path(
        "password_change/",
        guard_password_change(auth_views.PasswordChangeView.as_view()),
        name="password_change",
    ),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
]

urlpatterns = [
    # Before admin.site.urls, so that the admin's login is throttled too.
    path("admin/login/", guard_login(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("healthz", views.healthz, name="healthz"),
    path("livez", views.livez, name="livez"),
    path("readyz", views.readyz, name="readyz"),
    path("", include("chat.urls")),
]
