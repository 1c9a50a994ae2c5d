"""The skeletons of the rooms' names and of the usernames that exist.

This uses chat.text.skeleton as it is today; a later change of that function
comes with a migration of its own that computes them again.
"""

from django.db import migrations

from chat.text import skeleton


def forwards(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    User = apps.get_model("auth", "User")
    UsernameSkeleton = apps.get_model("chat", "UsernameSkeleton")
    for room in Room.objects.all():
        room.name_skeleton = skeleton(room.name)[:300]
        room.save(update_fields=["name_skeleton"])
    UsernameSkeleton.objects.bulk_create(
        [
            UsernameSkeleton(user_id=pk, skeleton=skeleton(username)[:300])
            for pk, username in User.objects.values_list("pk", "username")
        ],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [("chat", "0007_name_skeletons")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
